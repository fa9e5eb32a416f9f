package repository

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
)

// tempCleaner is a backend whose CleanTemp fails with err.
type tempCleaner struct {
	backend.Backend
	err error
}

func (c tempCleaner) CleanTemp(context.Context, time.Duration) (int, error) { return 0, c.err }

// Only the backup writer's S3 role may list and abort multipart uploads:
// the other roles' commands skip the clean-up quietly when refused, while
// any other failure is still a warning.
func TestCleanStaleTempRefused(t *testing.T) {
	for _, c := range []struct {
		err  error
		warn bool
	}{
		{fmt.Errorf("listing incomplete multipart uploads: %w: S3 refused s3:ListBucketMultipartUploads", fs.ErrPermission), false},
		{fmt.Errorf("listing incomplete multipart uploads: connection reset"), true},
	} {
		var logs bytes.Buffer
		r := &Repository{be: tempCleaner{mem.New(), c.err}, log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
		r.CleanStaleTemp(context.Background())
		if got := strings.Contains(logs.String(), "level=WARN"); got != c.warn {
			t.Errorf("%v: warned %v, want %v:\n%s", c.err, got, c.warn, logs.String())
		}
	}
}
