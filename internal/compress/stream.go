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
	pieces := (n + StreamPiece - 1) / StreamPiece
	workers := max(1, min(runtime.GOMAXPROCS(0), pieces))
	// A piece being read and one whose frame waits its turn to be
	// appended, besides those being compressed.
	nslots := min(workers+2, max(1, pieces))
	room := frameBound(StreamPiece)
	// The inputs first, each on huge pages of its own (StreamPiece is a
	// multiple of 2 MiB), then the outputs, of which only the start is
	// ever written: the kernel zeroes every huge page touched.
	mem := hugemem.Alloc(nslots * (StreamPiece + room))
	defer mem.Free()
	type slot struct {
		in, out []byte
		err     error
		done    chan struct{}
	}
	slots := make([]*slot, nslots)
	ins, outs := mem.Bytes()[:nslots*StreamPiece], mem.Bytes()[nslots*StreamPiece:]
	for i := range slots {
		slots[i] = &slot{
			in:   ins[i*StreamPiece : (i+1)*StreamPiece : (i+1)*StreamPiece],
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
	for left := n; left > 0 && err == nil; {
		if len(slots) == 0 {
			collect()
			continue
		}
		s := slots[len(slots)-1]
		slots = slots[:len(slots)-1]
		k := min(left, StreamPiece)
		if got, rerr := io.ReadFull(r, s.in[:k]); rerr != nil {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			err = fmt.Errorf("reading byte %d of %d: %w", n-left+got, n, rerr)
			slots = append(slots, s)
			break
		}
		s.in = s.in[:k]
		left -= k
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
