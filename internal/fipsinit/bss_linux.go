//go:build linux

package fipsinit

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// anchor lies in the binary's zero-initialized data without pointers
// (.noptrbss), the mapping of the entropy source's scratch buffer.
var anchor [1]byte

const hugePage = 2 << 20

// hugeBSS asks for huge pages on the mapping that holds anchor. Failures
// are ignored: they cost start-up time, not correctness.
func hugeBSS() {
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	addr := uintptr(unsafe.Pointer(&anchor))
	lo, hi, ok := mappingOf(maps, addr)
	if !ok {
		return
	}
	start := (lo + hugePage - 1) &^ (hugePage - 1)
	if start >= hi {
		return
	}
	// The BSS is not the Go heap: a pointer into it, away from anchor,
	// is never moved or collected.
	p := unsafe.Add(unsafe.Pointer(&anchor), int(start)-int(addr))
	syscall.Madvise(unsafe.Slice((*byte)(p), hi-start), syscall.MADV_HUGEPAGE)
}

// mappingOf finds, in the text of /proc/PID/maps, the private writable
// anonymous mapping that holds addr.
func mappingOf(maps []byte, addr uintptr) (lo, hi uintptr, ok bool) {
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 5 {
			continue
		}
		l, h, found := bytes.Cut(fields[0], []byte("-"))
		if !found {
			continue
		}
		a, err1 := strconv.ParseUint(string(l), 16, 64)
		b, err2 := strconv.ParseUint(string(h), 16, 64)
		if err1 != nil || err2 != nil || uintptr(a) > addr || addr >= uintptr(b) {
			continue
		}
		// rw-p with no file (inode 0): the BSS, not a file's pages.
		if !bytes.HasPrefix(fields[1], []byte("rw")) || string(fields[4]) != "0" || len(fields) > 5 {
			return 0, 0, false
		}
		return uintptr(a), uintptr(b), true
	}
	return 0, 0, false
}
