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

// An exactDecoder appends to dst the decoding of src, which declares that
// it decodes to exactly n bytes (dst has room for them). It reports false
// for anything else: more or fewer bytes, malformed input, a failure of
// its own. Only libzstd builds have one: it decodes 15% faster than
// klauspost's decoder on database pages, and what it decodes has been
// authenticated first.
type exactDecoder interface {
	decodeExact(dst, src []byte, n int) ([]byte, bool)
}
