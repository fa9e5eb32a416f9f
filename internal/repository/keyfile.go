package repository

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

// A key file holds a generated secret that opens one key slot, for machines
// and daemons (archive_command) rather than people. Its one line is
//
//	nestguard-key-v1:<slot id>:<base64 secret>
//
// The slot id lets the repository be unlocked with a single read.
const keyFilePrefix = "nestguard-key-v1:"

// FormatKeyFile returns the content of a key file.
func FormatKeyFile(slotID string, secret []byte) []byte {
	out := make([]byte, 0, len(keyFilePrefix)+len(slotID)+2+base64.StdEncoding.EncodedLen(len(secret)))
	out = append(out, keyFilePrefix...)
	out = append(out, slotID...)
	out = append(out, ':')
	out = base64.StdEncoding.AppendEncode(out, secret)
	return append(out, '\n')
}

// ParseKeyFile reads a key file's content. Errors never quote the content.
func ParseKeyFile(b []byte) (slotID string, secret []byte, err error) {
	// Bytes, not a string: the caller can zero b, and no copy of the
	// encoded secret is left in memory that cannot be.
	line := bytes.TrimSpace(b)
	rest, ok := bytes.CutPrefix(line, []byte(keyFilePrefix))
	if !ok {
		return "", nil, fmt.Errorf("not a nestguard key file (it must start with %q; make one with 'nestguard key add --generate-key-file PATH')", keyFilePrefix)
	}
	slot, enc, ok := bytes.Cut(rest, []byte(":"))
	if !ok || len(slot) != 64 {
		return "", nil, fmt.Errorf("malformed key file: no slot id")
	}
	secret = make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(secret, enc)
	if err != nil || n != 32 {
		clear(secret)
		return "", nil, fmt.Errorf("malformed key file: the secret is not 32 base64-encoded bytes")
	}
	return string(slot), secret[:n], nil
}
