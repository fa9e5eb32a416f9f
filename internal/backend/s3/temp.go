package s3

import (
	"context"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
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
	var stale []types.MultipartUpload
	// The whole bucket is listed and filtered here: MinIO lists the uploads
	// of a key prefix only when it is a whole key, and none otherwise.
	pages := awss3.NewListMultipartUploadsPaginator(b.client, &awss3.ListMultipartUploadsInput{Bucket: &b.bucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return 0, b.wrap(err, "listing incomplete multipart uploads of bucket %q", b.bucket)
		}
		for _, u := range page.Uploads {
			if strings.HasPrefix(aws.ToString(u.Key), prefix) && aws.ToTime(u.Initiated).Before(cutoff) {
				stale = append(stale, u)
			}
		}
	}
	removed := 0
	for _, u := range stale {
		_, err := b.client.AbortMultipartUpload(ctx, &awss3.AbortMultipartUploadInput{Bucket: &b.bucket, Key: u.Key, UploadId: u.UploadId})
		if err != nil {
			return removed, b.wrap(err, "aborting the multipart upload of %s started %s", aws.ToString(u.Key), aws.ToTime(u.Initiated).UTC().Format(time.RFC3339))
		}
		removed++
	}
	return removed, nil
}
