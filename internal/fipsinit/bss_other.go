//go:build !linux

package fipsinit

func hugeBSS() {}
