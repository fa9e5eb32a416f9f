package location

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/backend/s3"
)

// openS3 opens the repository under prefix in bucket, wrapped in retries.
// The bucket must exist whether or not create is set: nestguard never
// creates buckets, and S3 has no directories to prepare; init then writes
// the repository's first objects.
func openS3(ctx context.Context, bucket, prefix string, o Options, create bool) (backend.Backend, error) {
	lookup := o.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	ro := retry.Options{Logger: o.Logger}
	if v, ok := lookup("AWS_MAX_ATTEMPTS"); ok && v != "" {
		// As the AWS CLI reads it: the tries of an operation in all,
		// the first included (here: of nestguard's retry layer, over
		// the SDK's own quick attempts).
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, &backend.LocationError{Msg: fmt.Sprintf("AWS_MAX_ATTEMPTS=%q: give the tries of an operation in all, a whole number from 1 to 100 (default 6)", v)}
		}
		ro.Attempts = n
	}
	region := o.S3Region
	if region == "" {
		region, _ = lookup("AWS_REGION")
	}
	be, err := s3.New(ctx, s3.Config{
		Endpoint:      o.S3Endpoint,
		Region:        region,
		Bucket:        bucket,
		Prefix:        prefix,
		PathStyle:     o.S3PathStyle,
		Secure:        !o.InsecureHTTP,
		CACertFile:    o.CACertFile,
		Logger:        o.Logger,
		LookupEnv:     lookup,
		Profile:       o.S3Profile,
		ProfileOrigin: o.S3ProfileOrigin,
		IdleTimeout:   o.S3IdleTimeout,
	})
	if err != nil {
		return nil, err
	}
	return retry.New(be, ro), nil
}
