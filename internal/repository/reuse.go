package repository

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
)

// SetCandidatePacks sets the packs that prune's deletion-candidate
// records name (internal/candidates), as a writer's commit step lists
// them before it stores anything. From then on this repository does not
// deduplicate against a blob whose every location is in one of them
// (Reusable; SaveBlob stores it again, in a new pack). nil or an
// empty set clears them. The repository keeps packs: the caller must not
// change it afterwards. docs/format.md ("Prune") says why.
func (r *Repository) SetCandidatePacks(packs map[id.ID]struct{}) {
	if len(packs) == 0 {
		r.candidates.Store(nil)
		return
	}
	r.candidates.Store(&packs)
}

// candidatePacks returns the set SetCandidatePacks set, or nil.
func (r *Repository) candidatePacks() map[id.ID]struct{} {
	if p := r.candidates.Load(); p != nil {
		return *p
	}
	return nil
}

// HasCandidatePacks reports whether SetCandidatePacks set any packs.
func (r *Repository) HasCandidatePacks() bool { return r.candidates.Load() != nil }

// Reusable reports whether a writer may reference blob bid without
// storing it: the index has a location of it in a pack that is not a
// deletion candidate (SetCandidatePacks). Without candidates it is
// Index().Has.
func (r *Repository) Reusable(bid id.ID) bool {
	cand := r.candidatePacks()
	if cand == nil {
		return r.idx.Has(bid)
	}
	for _, e := range r.idx.Locations(bid) {
		if _, ok := cand[e.Pack]; !ok {
			return true
		}
	}
	return false
}

// Logger returns the logger the repository warns through, for the steps
// above it that have none of their own (the commit step).
func (r *Repository) Logger() *slog.Logger { return r.log }

// IndexObjectsGone lists the index objects this repository read or wrote
// that are no longer stored. A prune removes the index objects that list
// a pack before it deletes the pack, so a writer that finds one gone
// checks which of the packs it knows were deleted (MissingPacks); repair
// index also removes damaged ones, which were never read.
func (r *Repository) IndexObjectsGone(ctx context.Context) ([]id.ID, error) {
	ids, err := r.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		return nil, err
	}
	present := make(map[id.ID]struct{}, len(ids))
	for _, oid := range ids {
		present[oid] = struct{}{}
	}
	r.idxMu.Lock()
	defer r.idxMu.Unlock()
	var gone []id.ID
	for oid := range r.loadedIndex {
		if _, ok := present[oid]; !ok {
			gone = append(gone, oid)
		}
	}
	return gone, nil
}

// MissingPacks lists the packs the in-memory index locates blobs in that
// are no longer stored. It lists every pack.
func (r *Repository) MissingPacks(ctx context.Context) ([]id.ID, error) {
	present := make(map[id.ID]struct{})
	err := r.be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if pid, err := id.Parse(fi.Name); err == nil {
			present[pid] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	var missing []id.ID
	for _, p := range r.idx.Packs() {
		if _, ok := present[p]; !ok {
			missing = append(missing, p)
		}
	}
	return missing, nil
}
