package repository

import (
	"encoding/base64"
	"fmt"
	"strings"
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
	return []byte(keyFilePrefix + slotID + ":" + base64.StdEncoding.EncodeToString(secret) + "\n")
}

// ParseKeyFile reads a key file's content. Errors never quote the content.
func ParseKeyFile(b []byte) (slotID string, secret []byte, err error) {
	line := strings.TrimSpace(string(b))
	rest, ok := strings.CutPrefix(line, keyFilePrefix)
	if !ok {
		return "", nil, fmt.Errorf("not a nestguard key file (it must start with %q; make one with 'nestguard key add --generate-key-file PATH')", keyFilePrefix)
	}
	slotID, enc, ok := strings.Cut(rest, ":")
	if !ok || len(slotID) != 64 {
		return "", nil, fmt.Errorf("malformed key file: no slot id")
	}
	secret, err = base64.StdEncoding.DecodeString(enc)
	if err != nil || len(secret) != 32 {
		return "", nil, fmt.Errorf("malformed key file: the secret is not 32 base64-encoded bytes")
	}
	return slotID, secret, nil
}
