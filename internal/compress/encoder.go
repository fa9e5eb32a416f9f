package compress

// An encoder appends one zstd frame of src, declaring its decoded size, to
// dst. It is safe for concurrent use. An error (libzstd out of memory, say)
// makes Compress store the data raw: slower to restore than compressed,
// never lost.
//
// Two implementations, chosen at build time, write the same format, and
// either build decodes what the other wrote:
//   - encoder_cgo.go: libzstd, the reference C implementation, through
//     github.com/DataDog/zstd (its sources are compiled in, so the binary
//     still needs no shared library). On PostgreSQL pages it compresses 3.5x
//     faster than the pure-Go encoder at the same level and 2.6% smaller.
//   - encoder_purego.go: klauspost/compress's pure-Go encoder, when cgo is
//     off (CGO_ENABLED=0 or no C compiler).
type encoder interface {
	appendFrame(dst, src []byte) ([]byte, error)
}

// pureGo is the Implementation of a build without cgo.
const pureGo = "klauspost/compress (pure Go)"
