package s3

import "crypto/fips140"

// withContentMD5 runs f, a minio-go call that computes the Content-MD5
// header of its request body itself with crypto/md5 (PutObjectRetention
// and PutObjectLegalHold: S3 requires the header on both, and minio-go
// offers no other checksum for them), outside GODEBUG=fips140=only's
// enforcement, which would make crypto/md5 panic. The MD5 there is a
// transport checksum of a few hundred bytes of XML that say which
// retention or hold to set, a use that protects nothing: the request is
// authenticated by its SigV4 signature (HMAC-SHA-256) and carried over
// TLS. It is the only MD5 nestguard runs; object uploads carry CRC32C
// (save.go). docs/security.md, "FIPS 140-3", says so.
func withContentMD5(f func() error) error {
	var err error
	fips140.WithoutEnforcement(func() { err = f() })
	return err
}
