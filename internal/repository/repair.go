package repository

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
)

// IndexRepair is what RepairIndex did.
type IndexRepair struct {
	// Indexed counts the packs no readable index object listed, now
	// listed by the new index objects.
	Indexed int
	// Removed are the damaged index objects deleted.
	Removed []id.ID
	// Kept are unreadable index objects left in place: the storage refused
	// to delete them (retention), a read failed for another reason than
	// damage, or they authenticate but cannot be decoded (perhaps written
	// by a newer nestguard). Every pack is indexed without them.
	Kept []IndexError
	// BadPacks are packs whose header cannot be read: no index object
	// lists them, and none can.
	BadPacks []id.ID
	// Candidates are packs no index object lists that a deletion-candidate
	// record names: a prune unindexed them to delete them (and was
	// interrupted), so they are left for the next prune, not indexed.
	Candidates []id.ID
}

// RepairIndex rebuilds what unreadable index objects listed from the pack
// headers: every pack that no readable index object lists gets its header
// read and is written into new index objects. Then each index object that
// is damaged on storage (its bytes do not match its name, or do not
// authenticate) is deleted where the storage allows it; one it does not is
// kept, superseded (docs/format.md). Packs in candidates, the packs that
// prune's deletion-candidate records name (internal/candidates), are never
// indexed. The index must be loaded.
func (r *Repository) RepairIndex(ctx context.Context, candidates map[id.ID]struct{}) (*IndexRepair, error) {
	// Index objects that failed to read before are tried again first.
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		return nil, err
	}
	if err := r.loadIndexObjects(ctx, ids); err != nil {
		return nil, err
	}
	n, bad, skipped, err := r.indexOrphans(ctx, candidates)
	if err != nil {
		return nil, err
	}
	rep := &IndexRepair{Indexed: n, BadPacks: bad, Candidates: skipped}
	for _, ie := range r.IndexErrors() {
		removed, err := r.removeDamagedIndex(ctx, ie.ID)
		switch {
		case err != nil:
			rep.Kept = append(rep.Kept, IndexError{ID: ie.ID, Err: err})
		case removed:
			rep.Removed = append(rep.Removed, ie.ID)
		}
	}
	r.idxMu.Lock()
	r.idxErrors = append([]IndexError(nil), rep.Kept...)
	r.idxMu.Unlock()
	return rep, nil
}

// removeDamagedIndex reads index object iid again and deletes it only if
// it is still damaged on storage. It returns false without error when the
// object is gone.
func (r *Repository) removeDamagedIndex(ctx context.Context, iid id.ID) (bool, error) {
	_, err := r.loadSealed(ctx, backend.IndexFile, iid)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err == nil:
		return false, errors.New("authenticates but cannot be decoded (written by a newer nestguard?): kept")
	case !errors.Is(err, ErrObjectCorrupted):
		return false, fmt.Errorf("cannot be read (%w): kept, it may not be damaged", err)
	}
	h := backend.Handle{Type: backend.IndexFile, Name: iid.String()}
	if err := r.be.Remove(ctx, h); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("damaged, but cannot be deleted (%w): kept; every pack is indexed without it", err)
	}
	r.log.Info("removed damaged index object", "object", h.String())
	return true, nil
}
