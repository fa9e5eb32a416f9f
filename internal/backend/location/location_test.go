package location

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nestguard/nestguard/internal/backend"
)

func TestParse(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo string
		want location
	}{
		{"/srv/backup", location{dir: "/srv/backup"}},
		{"/srv/backup/", location{dir: "/srv/backup"}},
		{"/srv//a/../backup", location{dir: "/srv/backup"}},
		{"rel/repo", location{dir: filepath.Join(cwd, "rel/repo")}},
		{".", location{dir: cwd}},
		{"file:///srv/backup", location{dir: "/srv/backup"}},
		{"file://localhost/srv/backup", location{dir: "/srv/backup"}},
		{"file:///srv/with%20space", location{dir: "/srv/with space"}},
		{"file:///srv/a%23b", location{dir: "/srv/a#b"}},
		{"local:/srv/backup", location{dir: "/srv/backup"}},
		{"local:rel", location{dir: filepath.Join(cwd, "rel")}},
		{"local:/srv/with%20percent", location{dir: "/srv/with%20percent"}},
		{"dir:with:colons", location{dir: filepath.Join(cwd, "dir:with:colons")}},
		{"s3://bucket/prefix", location{bucket: "bucket", prefix: "prefix"}},
		{"s3://bucket/a/b/", location{bucket: "bucket", prefix: "a/b"}},
		{"s3://bucket", location{bucket: "bucket"}},
		{"s3://bucket/", location{bucket: "bucket"}},
	} {
		got, err := parse(tc.repo)
		if err != nil || got != tc.want {
			t.Errorf("parse(%q) = %+v, %v; want %+v", tc.repo, got, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ repo, msg string }{
		{"", "no repository given"},
		{"s3://", "no bucket"},
		{"s3:///prefix", "no bucket"},
		{"s3:bucket/prefix", "s3://bucket/prefix"},
		{"file://otherhost/srv", "otherhost"},
		{"file://", "no directory"},
		{"local:", "no directory"},
		{"file:///srv/a#b", "no query or fragment"},
		{"file:///srv/a?b", "no query or fragment"},
		{"sftp://host/backup", "unsupported scheme"},
		{"http://host/backup", "unsupported scheme"},
		{"s3://AKIAEXAMPLE:s3cretKEY@minio.example:9000/bucket", "credentials in the repository URL"},
		{"s3://token@bucket/prefix", "credentials in the repository URL"},
	} {
		_, err := parse(tc.repo)
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "token")) {
			t.Errorf("parse(%q): the error repeats the credentials: %v", tc.repo, err)
		}
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("parse(%q): %v, want an error containing %q", tc.repo, err, tc.msg)
		}
	}
}

func TestOpenCreateLocal(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatalf("Open of a missing local repository must succeed: %v", err)
	}
	if _, err := be.Stat(ctx, backend.Handle{Type: backend.ConfigFile, Name: "config"}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat config: %v, want fs.ErrNotExist", err)
	}
	be, err = Create(ctx, "file://"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if be.Location() != dir {
		t.Errorf("Location() = %q, want %q", be.Location(), dir)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data")); err != nil || !fi.IsDir() {
		t.Errorf("Create did not make the layout: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{"", f} {
		be, err := Open(ctx, repo, Options{})
		if err == nil || be != nil {
			t.Errorf("Open(%q) = %v, %v; want a nil backend and an error", repo, be, err)
		}
	}
	// S3 errors without leaving the machine: credentials from the
	// environment (so no metadata service is asked), a closed loopback port.
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	be, err := Open(ctx, "s3://bucket/prefix", Options{S3Endpoint: "127.0.0.1:1", InsecureHTTP: true})
	if err == nil || be != nil {
		t.Errorf("Open of an unreachable S3 endpoint = %v, %v; want an error", be, err)
	}
	// AWS_MAX_ATTEMPTS that is no count of tries: a mistake in the
	// environment (exit 2), before any request.
	for _, v := range []string{"x", "0", "101", "-1"} {
		_, err := Open(ctx, "s3://bucket/prefix", Options{S3Endpoint: "192.0.2.1:9000", LookupEnv: func(k string) (string, bool) {
			if k == "AWS_MAX_ATTEMPTS" {
				return v, true
			}
			return os.LookupEnv(k)
		}})
		var le *backend.LocationError
		if !errors.As(err, &le) || !strings.Contains(err.Error(), "AWS_MAX_ATTEMPTS") {
			t.Errorf("AWS_MAX_ATTEMPTS=%s: %v, want a LocationError naming it", v, err)
		}
	}
	// Plain HTTP only to loopback (192.0.2.1 is TEST-NET-1: never contacted,
	// the check comes first).
	_, err = Create(ctx, "s3://bucket/prefix", Options{S3Endpoint: "192.0.2.1:9000", InsecureHTTP: true})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("Create over plain HTTP to a non-loopback endpoint: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/srv", "rel", "s3://b/p", "file:///x", "file://h/x", "local:x", "a://b", "s3:", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, repo string) {
		loc, err := parse(repo)
		if err != nil {
			return
		}
		switch {
		case loc.bucket != "":
			if loc.dir != "" || strings.HasPrefix(loc.prefix, "/") || strings.HasSuffix(loc.prefix, "/") {
				t.Errorf("parse(%q) = %+v", repo, loc)
			}
		case !filepath.IsAbs(loc.dir):
			t.Errorf("parse(%q) = %+v: not an absolute directory", repo, loc)
		}
	})
}
