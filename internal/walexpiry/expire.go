package walexpiry

import (
	"context"
	"fmt"

	"github.com/nestguard/nestguard/internal/backend"
)

// Lister is what List needs of a repository.
type Lister interface {
	Backend() backend.Backend
}

// List returns the WAL objects of the repository.
func List(ctx context.Context, r Lister) ([]backend.FileInfo, error) {
	var out []backend.FileInfo
	err := r.Backend().List(ctx, backend.WALFile, func(fi backend.FileInfo) error {
		out = append(out, fi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing archived WAL: %w", err)
	}
	return out, nil
}

// Names returns the names of the objects.
func Names(objs []Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.Name
	}
	return out
}
