package location

import (
	"context"
	"errors"

	"github.com/nestguard/nestguard/internal/backend"
)

// openS3 opens an S3 repository; the S3 backend is not built in yet.
func openS3(ctx context.Context, bucket, prefix string, o Options, create bool) (backend.Backend, error) {
	return nil, errors.New("S3 repositories: not built into this nestguard yet")
}
