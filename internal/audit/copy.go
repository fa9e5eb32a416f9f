package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/nestguard/nestguard/internal/backend"
)

// ErrLogDiverged is the error (wrapped) of CopyEntries when the source's
// log is no longer an extension of the copy the destination holds.
var ErrLogDiverged = errors.New("the source's audit log diverged from the destination's copy")

// CopyEntries stores in dst every audit log entry of src that dst lacks,
// byte for byte under the same name: the entries are self-contained
// (sealed records, signed checkpoint), so the copy verifies with the
// source log's verifier key, and its records open with the source's
// passphrase. The signing key is never copied. It returns how many entries
// it stored. Entries are copied in log order, so an interrupted copy
// leaves a prefix of each log.
//
// The destination witnesses the source's log: the newest entry both
// hold of a log must be the same bytes in both, and the source's own log
// (srcID, the source repository's id) may not end before the copy the
// destination holds of it. If either is not so (the source was rolled
// back, or its newest entries replaced), nothing more of that log is
// copied, so that the destination keeps the history it had rather than
// a mix of two, and the error, once every other log is copied, wraps
// ErrLogDiverged. (A log the source holds only as a copy may be behind
// the destination's: copies run both ways.)
func CopyEntries(ctx context.Context, src, dst backend.Backend, srcID string) (int, error) {
	have := make(map[string]bool)
	newest := make(map[string]uint64) // log id -> start of dst's newest entry
	err := dst.List(ctx, backend.AuditFile, func(fi backend.FileInfo) error {
		have[fi.Name] = true
		if id, start, ok := parseEntryName(fi.Name); ok {
			if n, seen := newest[id]; !seen || start > n {
				newest[id] = start
			}
		}
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
	var diverged []error
	for _, logID := range ids {
		starts, err := entryStarts(ctx, src, logID)
		if err != nil {
			return n, fmt.Errorf("source: %w", err)
		}
		if err := witness(ctx, src, dst, logID, srcID, starts, have, newest); err != nil {
			if !errors.Is(err, ErrLogDiverged) {
				return n, err
			}
			diverged = append(diverged, err)
			continue
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
	return n, errors.Join(diverged...)
}

// witness checks the source's entries of logID (starts, in order)
// against the destination's (have, and newest: the start of its newest
// entry of each log).
func witness(ctx context.Context, src, dst backend.Backend, logID, srcID string, starts []uint64, have map[string]bool, newest map[string]uint64) error {
	last, ok := newest[logID]
	if !ok {
		return nil // never copied
	}
	if logID == srcID && (len(starts) == 0 || starts[len(starts)-1] < last) {
		h := backend.Handle{Type: backend.AuditFile, Name: entryName(logID, last)}
		return fmt.Errorf("%w: the source's own log ends before %s, which an earlier copy carried: the source was rolled back or its newest entries deleted. Nothing more of log %s is copied; the destination keeps the history it had, as evidence: check both with 'nestguard audit verify --key'", ErrLogDiverged, h, logID)
	}
	for i := len(starts) - 1; i >= 0; i-- {
		if have[entryName(logID, starts[i])] {
			return sameEntry(ctx, src, dst, logID, starts[i])
		}
	}
	return nil
}

// sameEntry checks that the source's entry of logID at start is the
// destination's.
func sameEntry(ctx context.Context, src, dst backend.Backend, logID string, start uint64) error {
	h := backend.Handle{Type: backend.AuditFile, Name: entryName(logID, start)}
	theirs, err := backend.ReadAll(ctx, dst, h, maxEntryLen)
	if err != nil {
		return fmt.Errorf("destination: reading %s: %w", h, err)
	}
	ours, err := backend.ReadAll(ctx, src, h, maxEntryLen)
	switch {
	case err != nil:
		return fmt.Errorf("source: reading %s: %w", h, err)
	case !bytes.Equal(ours, theirs):
		return fmt.Errorf("%w: %s differs from the copy an earlier copy carried: the source's log was rolled back and appended to again, or rewritten. Nothing more of log %s is copied; the destination keeps the history it had, as evidence: check both with 'nestguard audit verify --key'", ErrLogDiverged, h, logID)
	}
	return nil
}
