//go:build !linux

package main

// hardenProcess does nothing where there is no prctl.
func hardenProcess() {}
