package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/miniotest"
)

func mustSave(t *testing.T, be backend.Backend, h backend.Handle, data []byte) {
	t.Helper()
	if err := be.Save(context.Background(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Save %s: %v", h, err)
	}
}

func mustLoad(t *testing.T, be backend.Backend, h backend.Handle) []byte {
	t.Helper()
	rc, err := be.Load(context.Background(), h, 0, 0)
	if err != nil {
		t.Fatalf("Load %s: %v", h, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading %s: %v", h, err)
	}
	return b
}

func TestObjectLock(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		direct := s.Client(t)

		t.Run("LockEnabled", func(t *testing.T) {
			for bucket, want := range map[string]bool{plainBucket: false, lockedBucket: true} {
				on, err := s.backend(t, bucket).LockEnabled(ctx)
				if err != nil || on != want {
					t.Errorf("LockEnabled on bucket %s: %v, %v; want %v", bucket, on, err, want)
				}
			}
		})

		// Compliance retention on every Save: neither nestguard nor the S3
		// API can delete or replace the object.
		t.Run("Compliance", func(t *testing.T) {
			be := s.backend(t, lockedBucket)
			be.SetDefaultRetention(backend.Compliance, time.Hour)
			h := backend.Handle{Type: backend.PackFile, Name: "c0ffee" + strings.Repeat("0", 58)}
			data := []byte("retained pack")
			before := time.Now()
			mustSave(t, be, h, data)

			r, err := be.Retention(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if r.Mode != backend.Compliance || r.Until.Before(before.Add(time.Hour-time.Second)) || r.Until.After(time.Now().Add(time.Hour+2*time.Second)) {
				t.Errorf("retention after Save: %+v, want COMPLIANCE until about now+1h", r)
			}

			key, _ := be.key(h)
			info, err := direct.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(lockedBucket), Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			// Deleting the version through the S3 API fails, even for root.
			_, err = direct.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: &key, VersionId: info.VersionId})
			if err == nil {
				t.Fatal("deleting a compliance-locked version through the S3 API succeeded")
			}
			// So does shortening the retention, even with the governance bypass.
			short := time.Now().Add(time.Minute)
			_, err = direct.PutObjectRetention(ctx, &awss3.PutObjectRetentionInput{
				Bucket: aws.String(lockedBucket), Key: &key, VersionId: info.VersionId, BypassGovernanceRetention: aws.Bool(true),
				Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: &short},
			})
			if err == nil {
				t.Error("shortening a compliance retention through the S3 API succeeded")
			}
			// nestguard does not try, and says until when.
			err = be.Remove(ctx, h)
			if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "retained (COMPLIANCE) until "+r.Until.UTC().Format(time.RFC3339)) {
				t.Errorf("Remove of a retained object: %v", err)
			}

			// An overwrite with If-None-Match, as nestguard writes, is refused.
			other := []byte("replacement")
			_, err = direct.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(lockedBucket), Key: &key, Body: bytes.NewReader(other), IfNoneMatch: aws.String("*")})
			if statusOf(err) != 412 {
				t.Errorf("conditional overwrite through the S3 API: %v, want 412 Precondition Failed", err)
			}
			// A plain overwrite succeeds on a versioned bucket, as a new
			// version beside the locked one, and a plain delete adds a delete
			// marker. Neither is visible to nestguard, which reads the
			// version it wrote.
			if _, err := direct.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(lockedBucket), Key: &key, Body: bytes.NewReader(other)}); err != nil {
				t.Fatalf("unconditional overwrite: %v", err)
			}
			fresh := s.backendAt(t, lockedBucket, be.prefix) // knows no versions yet
			if got := mustLoad(t, fresh, h); !bytes.Equal(got, data) {
				t.Errorf("after an overwrite through the S3 API nestguard reads %q, want its own %q", got, data)
			}
			if _, err := direct.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: &key}); err != nil {
				t.Fatalf("delete marker: %v", err)
			}
			fresh = s.backendAt(t, lockedBucket, be.prefix)
			if got := mustLoad(t, fresh, h); !bytes.Equal(got, data) {
				t.Errorf("after a delete marker nestguard reads %q, want %q", got, data)
			}
			listed := 0
			fresh.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
				listed++
				if fi.Name != h.Name || fi.Size != int64(len(data)) {
					t.Errorf("List after overwrite and delete marker: %+v", fi)
				}
				return nil
			})
			if listed != 1 {
				t.Errorf("List after overwrite and delete marker: %d objects, want 1", listed)
			}
			if fi, err := fresh.Stat(ctx, h); err != nil || fi.Size != int64(len(data)) {
				t.Errorf("Stat after overwrite and delete marker: %+v, %v", fi, err)
			}
		})

		t.Run("SetRetentionNeverShortens", func(t *testing.T) {
			be := s.backend(t, lockedBucket)
			h := backend.Handle{Type: backend.SnapshotFile, Name: "5a"}
			mustSave(t, be, h, []byte("snapshot"))
			if r, err := be.Retention(ctx, h); err != nil || r.Mode != "" {
				t.Fatalf("retention without a default: %+v, %v", r, err)
			}
			later := time.Now().Add(2 * time.Hour).Truncate(time.Second)
			if err := be.SetRetention(ctx, h, backend.Governance, later); err != nil {
				t.Fatal(err)
			}
			if err := be.SetRetention(ctx, h, backend.Governance, later.Add(-time.Hour)); err != nil {
				t.Fatalf("SetRetention to an earlier date: %v, want a no-op", err)
			}
			if r, _ := be.Retention(ctx, h); r.Mode != backend.Governance || !r.Until.Equal(later) {
				t.Errorf("after asking for a shorter retention: %+v, want GOVERNANCE until %v", r, later)
			}
			// Extending works and keeps the mode: governance is not turned
			// into compliance (that would need the governance bypass)...
			if err := be.SetRetention(ctx, h, backend.Compliance, later.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if r, _ := be.Retention(ctx, h); r.Mode != backend.Governance || !r.Until.Equal(later.Add(time.Hour)) {
				t.Errorf("after extending with compliance: %+v, want GOVERNANCE until %v", r, later.Add(time.Hour))
			}
			// ...and compliance never becomes governance.
			hc := backend.Handle{Type: backend.SnapshotFile, Name: "5b"}
			mustSave(t, be, hc, []byte("snapshot"))
			if err := be.SetRetention(ctx, hc, backend.Compliance, later); err != nil {
				t.Fatal(err)
			}
			if err := be.SetRetention(ctx, hc, backend.Governance, later.Add(2*time.Hour)); err != nil {
				t.Fatal(err)
			}
			if r, _ := be.Retention(ctx, hc); r.Mode != backend.Compliance || !r.Until.Equal(later.Add(2*time.Hour)) {
				t.Errorf("extending with governance on a compliance object: %+v, want COMPLIANCE kept", r)
			}
			if err := be.SetRetention(ctx, h, "FOREVER", later); err == nil {
				t.Error("SetRetention with an unknown mode: no error")
			}
		})

		t.Run("LegalHold", func(t *testing.T) {
			be := s.backend(t, lockedBucket)
			h := backend.Handle{Type: backend.IndexFile, Name: "1d"}
			mustSave(t, be, h, []byte("index"))
			if err := be.SetLegalHold(ctx, h, true); err != nil {
				t.Fatal(err)
			}
			if r, err := be.Retention(ctx, h); err != nil || !r.LegalHold {
				t.Fatalf("after placing a hold: %+v, %v", r, err)
			}
			key, _ := be.key(h)
			info, err := direct.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(lockedBucket), Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := direct.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(lockedBucket), Key: &key, VersionId: info.VersionId, BypassGovernanceRetention: aws.Bool(true)}); err == nil {
				t.Fatal("deleting a held version through the S3 API succeeded")
			}
			if err := be.Remove(ctx, h); !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), "legal hold") {
				t.Errorf("Remove of a held object: %v", err)
			}
			if err := be.SetLegalHold(ctx, h, false); err != nil {
				t.Fatal(err)
			}
			if r, _ := be.Retention(ctx, h); r.LegalHold {
				t.Error("hold still on after release")
			}
			if err := be.Remove(ctx, h); err != nil {
				t.Errorf("Remove after releasing the hold: %v", err)
			}
			if _, err := direct.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(lockedBucket), Key: &key, VersionId: info.VersionId}); err == nil {
				t.Error("Remove left the version behind a delete marker instead of deleting it")
			}
		})

		t.Run("MultipartWithRetention", func(t *testing.T) {
			cfg := s.config(lockedBucket)
			cfg.PartSize = minPartSize
			be, err := New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			be.SetDefaultRetention(backend.Governance, time.Hour)
			data := bytes.Repeat([]byte("0123456789abcdef"), (2*minPartSize+1000)/16)
			h := backend.Handle{Type: backend.PackFile, Name: "ab12"}
			mustSave(t, be, h, data)
			if r, err := be.Retention(ctx, h); err != nil || r.Mode != backend.Governance {
				t.Errorf("retention of a multipart upload: %+v, %v", r, err)
			}
			if got := mustLoad(t, be, h); !bytes.Equal(got, data) {
				t.Error("multipart object with retention reads back wrong")
			}
		})
	})
}

// backendAt opens another backend on an existing prefix.
func (s *testServer) backendAt(t *testing.T, bucket, prefix string) *Backend {
	t.Helper()
	cfg := s.config(bucket)
	cfg.Prefix = prefix
	be, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return be
}
