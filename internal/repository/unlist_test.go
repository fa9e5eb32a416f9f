package repository

import (
	"context"
	"slices"
	"testing"

	"github.com/nestguard/nestguard/internal/id"
)

// TestUnlistPacks: a writer takes packs out of the index objects it wrote,
// and only out of those; another writer's index objects stay as they are.
func TestUnlistPacks(t *testing.T) {
	ctx := context.Background()
	r, be := newRepo(t)
	other := reopen(t, be)
	theirs := saveBlobs(t, other, 1, 4)
	mine := saveBlobs(t, r, 2, 6)
	packs := reopen(t, be).Index().Packs()
	var gone []id.ID
	for bid := range mine {
		for _, e := range r.Index().Locations(bid) {
			if !slices.Contains(gone, e.Pack) {
				gone = append(gone, e.Pack)
			}
		}
		break
	}
	for bid := range theirs {
		gone = append(gone, other.Index().Locations(bid)[0].Pack)
		break
	}
	if err := r.UnlistPacks(ctx, gone); err != nil {
		t.Fatal(err)
	}
	after := reopen(t, be).Index().Packs()
	for _, p := range packs {
		switch want := p != gone[0]; {
		case slices.Contains(after, p) != want:
			t.Errorf("pack %s listed: %v, want %v", p.Short(), !want, want)
		}
	}
	// Again: nothing more to take out.
	if err := r.UnlistPacks(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if got := reopen(t, be).Index().Packs(); len(got) != len(after) {
		t.Errorf("second unlisting: %d packs listed, want %d", len(got), len(after))
	}
}
