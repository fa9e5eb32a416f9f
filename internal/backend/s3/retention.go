package s3

import (
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/nestguard/nestguard/internal/backend"
)

// SetDefaultRetention makes every later Save set Object Lock retention
// mode until now+d. It implements RetentionDefaulter.
func (b *Backend) SetDefaultRetention(mode backend.RetentionMode, d time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.retMode, b.retPeriod = mode, d
}

// newRetention returns the retention for an object saved now, if any.
func (b *Backend) newRetention() (types.ObjectLockMode, *time.Time) {
	b.mu.Lock()
	mode, d := b.retMode, b.retPeriod
	b.mu.Unlock()
	if mode == "" {
		return "", nil
	}
	until := ceilSecond(time.Now().Add(d))
	return types.ObjectLockMode(mode), &until
}

// ceilSecond rounds t up to a whole second: S3 keeps retain-until dates
// to the second, and rounding down would shorten a retention.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second).UTC()
	}
	return t.UTC()
}
