package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/nestguard/nestguard/internal/backend"
)

// CopyEntries stores in dst every audit log entry of src that dst lacks,
// byte for byte under the same name: the entries are self-contained
// (sealed records, signed checkpoint), so the copy verifies with the
// source log's verifier key, and its records open with the source's
// passphrase. The signing key is never copied. It returns how many entries
// it stored. Entries are copied in log order, so an interrupted copy
// leaves a prefix of each log.
func CopyEntries(ctx context.Context, src, dst backend.Backend) (int, error) {
	have := make(map[string]bool)
	err := dst.List(ctx, backend.AuditFile, func(fi backend.FileInfo) error {
		have[fi.Name] = true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("destination: listing the audit log: %w", err)
	}
	ids, err := LogIDs(ctx, src)
	if err != nil {
		return 0, fmt.Errorf("source: %w", err)
	}
	n := 0
	for _, logID := range ids {
		starts, err := entryStarts(ctx, src, logID)
		if err != nil {
			return n, fmt.Errorf("source: %w", err)
		}
		for _, start := range starts {
			h := backend.Handle{Type: backend.AuditFile, Name: entryName(logID, start)}
			if have[h.Name] {
				continue
			}
			b, err := backend.ReadAll(ctx, src, h, maxEntryLen)
			if err != nil {
				return n, fmt.Errorf("source: reading %s: %w", h, err)
			}
			err = dst.Save(ctx, h, bytes.NewReader(b), int64(len(b)))
			if errors.Is(err, fs.ErrExist) {
				got, rerr := backend.ReadAll(ctx, dst, h, maxEntryLen)
				if rerr == nil && bytes.Equal(got, b) {
					continue
				}
				return n, fmt.Errorf("destination: %s exists with other bytes than the source's: the two repositories share a log id (one is a storage-level clone of the other?)", h)
			}
			if err != nil {
				return n, fmt.Errorf("destination: %w", err)
			}
			n++
		}
	}
	return n, nil
}
