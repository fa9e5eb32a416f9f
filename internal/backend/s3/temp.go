package s3

import (
	"context"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
)

// CleanTemp implements backend.TempCleaner: it aborts the incomplete
// multipart uploads under the repository's prefix that were started more
// than olderThan ago, left by a process killed in the middle of a large
// upload (a failed upload is aborted at once), and returns how many it
// aborted. Their parts are invisible but billed until then.
func (b *Backend) CleanTemp(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := time.Now().Add(-olderThan)
	prefix := b.prefix
	if prefix != "" {
		prefix += "/"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing when an abort fails
	var stale []minio.ObjectMultipartInfo
	// The whole bucket is listed and filtered here: MinIO lists the uploads
	// of a key prefix only when it is a whole key, and none otherwise.
	for u := range b.client.ListIncompleteUploads(ctx, b.bucket, "", true) {
		if u.Err != nil {
			return 0, b.wrap(u.Err, "listing incomplete multipart uploads of bucket %q", b.bucket)
		}
		if strings.HasPrefix(u.Key, prefix) && u.Initiated.Before(cutoff) {
			stale = append(stale, u)
		}
	}
	removed := 0
	for _, u := range stale {
		if err := b.core.AbortMultipartUpload(ctx, b.bucket, u.Key, u.UploadID); err != nil {
			return removed, b.wrap(err, "aborting the multipart upload of %s started %s", u.Key, u.Initiated.UTC().Format(time.RFC3339))
		}
		removed++
	}
	return removed, nil
}
