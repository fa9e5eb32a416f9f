package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/miniotest"
)

// changingReader returns different bytes from the second pass on: what a
// source modified while being uploaded looks like.
type changingReader struct {
	*bytes.Reader
	data   []byte
	passes int
}

func newChangingReader(data []byte) *changingReader {
	return &changingReader{Reader: bytes.NewReader(data), data: data}
}

func (c *changingReader) Seek(off int64, whence int) (int64, error) {
	if off == 0 && whence == io.SeekStart {
		c.passes++
		if c.passes == 1 {
			changed := bytes.Clone(c.data)
			changed[len(changed)/2] ^= 1
			c.Reader = bytes.NewReader(changed)
		}
	}
	return c.Reader.Seek(off, whence)
}

// No ReadAt: Save must use its seeking section reader.
type seekOnly struct{ io.ReadSeeker }

func TestSave(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		ctx := context.Background()
		direct := s.Client(t)
		cfg := s.config(plainBucket)
		cfg.PartSize = minPartSize
		be, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("nestguard multipart "), (2*minPartSize+123)/20)

		t.Run("ServerVerifiesChecksums", func(t *testing.T) {
			for _, d := range [][]byte{[]byte("a small object"), big} {
				h := backend.Handle{Type: backend.IndexFile, Name: "changing"}
				err := be.Save(ctx, h, newChangingReader(d), int64(len(d)))
				if err == nil {
					t.Fatalf("Save of %d bytes that changed between checksum and upload: no error", len(d))
				}
				if !strings.Contains(strings.ToLower(err.Error()), "checksum") && !strings.Contains(err.Error(), "BadDigest") {
					t.Errorf("Save of changed data failed, but not on the checksum: %v", err)
				}
				t.Logf("%d bytes: %v", len(d), err)
				if _, err := be.Stat(ctx, h); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("an upload with a wrong checksum was stored (%d bytes): %v", len(d), err)
				}
			}
		})

		t.Run("Multipart", func(t *testing.T) {
			h := backend.Handle{Type: backend.PackFile, Name: "beef01"}
			if err := be.Save(ctx, h, seekOnly{bytes.NewReader(big)}, int64(len(big))); err != nil {
				t.Fatal(err)
			}
			key, _ := be.key(h)
			if key != be.prefix+"/data/be/beef01" {
				t.Errorf("pack key %q, want <prefix>/data/be/beef01", key)
			}
			info, err := direct.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(plainBucket), Key: &key})
			if err != nil {
				t.Fatal(err)
			}
			if etag := aws.ToString(info.ETag); !strings.HasSuffix(strings.Trim(etag, `"`), "-3") {
				t.Errorf("ETag %q: want a 3-part multipart upload", etag)
			}
			if got := mustLoad(t, be, h); !bytes.Equal(got, big) {
				t.Error("multipart object reads back wrong")
			}
			// A second multipart Save of the name fails at completion and
			// leaves neither a replacement nor parts behind.
			other := bytes.Repeat([]byte("x"), len(big))
			if err := be.Save(ctx, h, bytes.NewReader(other), int64(len(other))); !errors.Is(err, fs.ErrExist) {
				t.Errorf("multipart Save of an existing name: %v, want fs.ErrExist", err)
			}
			if got := mustLoad(t, be, h); !bytes.Equal(got, big) {
				t.Error("a refused multipart Save replaced the object")
			}
			// The whole bucket is listed: MinIO lists a prefix's uploads only
			// for a whole key.
			uploads, err := direct.ListMultipartUploads(ctx, &awss3.ListMultipartUploadsInput{Bucket: aws.String(plainBucket)})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range uploads.Uploads {
				if strings.HasPrefix(aws.ToString(u.Key), be.prefix+"/") {
					t.Errorf("incomplete upload left behind: %s", aws.ToString(u.Key))
				}
			}
		})

		t.Run("ListSkipsStrayKeys", func(t *testing.T) {
			be := s.backend(t, plainBucket)
			h := backend.Handle{Type: backend.PackFile, Name: "a1b2"}
			mustSave(t, be, h, []byte("pack"))
			for _, stray := range []string{"/data/a1b2", "/data/zz/a1b2", "/data/a1/", "/data/a1/b2/c3", "/datax/a1/a1", "/keys/"} {
				// A key ending in '/' is a directory on a posix store
				// (versitygw), which holds no data.
				body := "x"
				if strings.HasSuffix(stray, "/") {
					body = ""
				}
				if _, err := direct.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String(plainBucket), Key: aws.String(be.prefix + stray), Body: strings.NewReader(body)}); err != nil {
					t.Fatal(err)
				}
			}
			var names []string
			if err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
				names = append(names, fi.Name)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0] != "a1b2" {
				t.Errorf("List of packs with stray keys: %v, want [a1b2]", names)
			}
			if err := be.List(ctx, backend.KeyFile, func(fi backend.FileInfo) error {
				t.Errorf("List of keys reports %q", fi.Name)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("InvalidHandles", func(t *testing.T) {
			for _, h := range []backend.Handle{
				{Type: backend.PackFile, Name: "a"},
				{Type: backend.IndexFile, Name: "../x"},
				{Type: backend.IndexFile, Name: ""},
				{Type: "", Name: "x"},
				{Type: backend.SnapshotFile, Name: "a/b"},
			} {
				if err := be.Save(ctx, h, strings.NewReader("x"), 1); err == nil {
					t.Errorf("Save of invalid handle %+v: no error", h)
				}
			}
		})
	})
}

func TestLocation(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		be := s.backend(t, plainBucket)
		if got, want := be.Location(), "s3://plain/"+be.prefix; got != want {
			t.Errorf("Location() = %q, want %q", got, want)
		}
		if strings.Contains(be.Location(), s.SecretKey) || strings.Contains(be.Location(), s.AccessKey) {
			t.Error("Location() shows credentials")
		}
		cfg := s.config(plainBucket)
		cfg.Prefix = "/a/b/"
		be, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if be.Location() != "s3://plain/a/b" {
			t.Errorf("Location() with slashes around the prefix: %q", be.Location())
		}
		if k, _ := be.key(backend.Handle{Type: backend.ConfigFile}); k != "a/b/config" {
			t.Errorf("config key %q", k)
		}
	})
}
