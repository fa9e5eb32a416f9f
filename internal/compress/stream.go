package compress

import (
	"fmt"
	"io"
	"runtime"

	"github.com/nestguard/nestguard/internal/hugemem"
)

// StreamPiece is the size of the pieces CompressStream reads and
// compresses as frames of their own. Smaller pieces start compressing
// sooner and share the work more evenly, larger ones compress better: on
// 65 real WAL segments of a pgbench run, at the fastest level, pieces of
// 512 KiB, 1, 2 and 4 MiB took 3.85%, 1.95%, 0.84% and 0.28% more bytes
// than Compress's two pieces of 8 MiB.
const StreamPiece = 2 << 20

// CompressStream compresses exactly n bytes read from r and appends them
// to dst in the form Compress gives a large input: a skippable frame with
// the total size, then independent frames of StreamPiece bytes each. The
// next piece is read while the ones before are compressed on the other
// cores, so reading costs the call little more than compressing; and the
// input is never held whole, so no memory as large as it is touched (a
// fresh page costs a fault, dear on virtual machines: see hugemem).
//
// Unlike Compress, it never stores the input raw: it cannot, having kept
// none of it. Input that does not compress costs zstd's raw blocks, 3
// bytes per 128 KiB. r yielding fewer than n bytes is an error wrapping
// io.ErrUnexpectedEOF; bytes after the n-th are not read.
func (c *Codec) CompressStream(dst []byte, r io.Reader, n int) ([]byte, error) {
	if n < 0 || n > maxDecoded {
		return dst, fmt.Errorf("compressing a stream of %d bytes: want 0 to %d", n, maxDecoded)
	}
	return c.compressPieces(dst, n, true, func(in []byte, off, k int) ([]byte, error) {
		if got, err := io.ReadFull(r, in[:k]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("reading byte %d of %d: %w", off+got, n, err)
		}
		return in[:k], nil
	})
}

// CompressPieces is CompressStream for input already in memory, such as a
// mapped file: the same output, but each piece is compressed where it
// lies, with no copy into memory of its own (which costs more than the
// kernel's mapping of a file in the page cache).
func (c *Codec) CompressPieces(dst, src []byte) ([]byte, error) {
	if len(src) > maxDecoded {
		return dst, fmt.Errorf("compressing %d bytes in pieces: want at most %d", len(src), maxDecoded)
	}
	return c.compressPieces(dst, len(src), false, func(_ []byte, off, k int) ([]byte, error) {
		return src[off : off+k], nil
	})
}

// compressPieces is CompressStream and CompressPieces: next gives the
// k bytes of input at off, in a slot's memory of StreamPiece bytes (in,
// when read is set; nil otherwise).
func (c *Codec) compressPieces(dst []byte, n int, read bool, next func(in []byte, off, k int) ([]byte, error)) ([]byte, error) {
	pieces := (n + StreamPiece - 1) / StreamPiece
	workers := max(1, min(runtime.GOMAXPROCS(0), pieces))
	// One whose frame waits its turn to be appended (and one being read)
	// besides those being compressed.
	nslots := workers + 1
	inLen := 0
	if read {
		nslots++
		inLen = StreamPiece
	}
	nslots = min(nslots, max(1, pieces))
	room := frameBound(StreamPiece)
	// The inputs first, each on huge pages of its own (StreamPiece is a
	// multiple of 2 MiB), then the outputs, of which only the start is
	// ever written: the kernel zeroes every huge page touched. Without
	// inputs, the outputs are on the Go heap's 4 KiB pages, where only
	// the pages written fault in: a compressed piece is mostly far
	// smaller than the huge page its first byte would have zeroed (2.5-3.5%
	// of an archive_command call, paired, docs/benchmarks.md).
	var mem *hugemem.Buffer
	if read {
		mem = hugemem.Alloc(nslots * (inLen + room))
	} else {
		mem = hugemem.Heap(nslots * room)
	}
	defer mem.Free()
	type slot struct {
		in, out []byte
		err     error
		done    chan struct{}
	}
	slots := make([]*slot, nslots)
	ins, outs := mem.Bytes()[:nslots*inLen], mem.Bytes()[nslots*inLen:]
	for i := range slots {
		slots[i] = &slot{
			in:   ins[i*inLen : (i+1)*inLen : (i+1)*inLen],
			out:  outs[i*room : i*room : (i+1)*room],
			done: make(chan struct{}, 1),
		}
	}
	work := make(chan *slot, nslots)
	for range workers {
		go func() {
			for s := range work {
				s.out, s.err = c.enc.appendFrame(s.out[:0], s.in)
				s.done <- struct{}{}
			}
		}()
	}
	orig := len(dst)
	dst = appendSizeFrame(dst, n)
	// inFlight holds the slots handed to the workers, oldest first: their
	// frames are appended in that order.
	inFlight := make([]*slot, 0, nslots)
	var err error
	collect := func() {
		s := inFlight[0]
		inFlight = inFlight[1:]
		<-s.done
		if s.err != nil && err == nil {
			err = fmt.Errorf("compressing: %w", s.err)
		}
		if err == nil {
			dst = append(dst, s.out...)
		}
		slots = append(slots, s)
	}
	for off := 0; off < n && err == nil; {
		if len(slots) == 0 {
			collect()
			continue
		}
		s := slots[len(slots)-1]
		k := min(n-off, StreamPiece)
		in, nerr := next(s.in, off, k)
		if nerr != nil {
			err = nerr
			break
		}
		slots = slots[:len(slots)-1]
		s.in = in
		off += k
		inFlight = append(inFlight, s)
		work <- s
	}
	close(work)
	for len(inFlight) > 0 {
		collect()
	}
	if err != nil {
		return dst[:orig], err
	}
	return dst, nil
}

// StreamBound is the most bytes CompressStream appends for n bytes of
// input.
func StreamBound(n int) int {
	return sizeFrameLen + (n+StreamPiece-1)/StreamPiece*frameBound(StreamPiece)
}
