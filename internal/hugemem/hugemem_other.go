//go:build !linux

package hugemem

func mapHuge(int) ([]byte, func(), bool) { return nil, nil, false }

func advise([]byte) func() { return func() {} }
