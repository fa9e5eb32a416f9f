//go:build !linux

package startup

func populateHeap() {}
