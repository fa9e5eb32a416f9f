package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/miniotest"
)

func TestWrapClassifies(t *testing.T) {
	b := &Backend{bucket: "bkt", location: "s3://bkt/p"}
	resp := apiError
	for _, c := range []struct {
		err       error
		transient bool
		is        error
	}{
		{resp(503, "SlowDown"), true, nil},
		{resp(500, "InternalError"), true, nil},
		{resp(400, "RequestTimeout"), true, nil},
		{resp(429, "TooManyRequests"), true, nil},
		{resp(409, "ConditionalRequestConflict"), true, nil},
		{resp(404, "NoSuchKey"), false, fs.ErrNotExist},
		{resp(412, "PreconditionFailed"), false, fs.ErrExist},
		{resp(403, "AccessDenied"), false, fs.ErrPermission},
		{resp(400, "InvalidArgument"), false, nil},
		{fmt.Errorf("dial: %w", io.ErrUnexpectedEOF), true, nil},
		{context.Canceled, false, context.Canceled},
	} {
		err := b.wrap(c.err, "doing %s", "x")
		if got := retry.IsTransient(err); got != c.transient {
			t.Errorf("%v: transient %v, want %v", c.err, got, c.transient)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%v: does not wrap %v", c.err, c.is)
		}
		if !strings.HasPrefix(err.Error(), "doing x (s3://bkt/p): ") {
			t.Errorf("message %q does not start with the operation and location", err)
		}
	}
	noLock := &smithy.OperationError{ServiceID: "S3", OperationName: "PutObject", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: 400}},
			Err:      &smithy.GenericAPIError{Code: "InvalidRequest", Message: "Bucket is missing ObjectLockConfiguration"},
		},
	}}
	if err := b.wrap(noLock, "saving"); retry.IsTransient(err) || !strings.Contains(err.Error(), `bucket "bkt" has no Object Lock`) {
		t.Errorf("a bucket without the Object Lock the repository needs: %v", err)
	}
	err := b.wrap(resp(404, "NoSuchBucket"), "stat")
	if errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), `bucket "bkt" does not exist`) {
		t.Errorf("a missing bucket reads as a missing object: %v", err)
	}
}

// apiError is an error answer of S3 as the SDK reports it.
func apiError(status int, code string) error {
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Test", Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
			Err:      &smithy.GenericAPIError{Code: code, Message: code},
		},
	}}
}

// body delivers data, then ends with err.
type body struct {
	r   io.Reader
	err error
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, b.err
	}
	return n, err
}
func (b *body) Close() error { return nil }

func TestBodyReader(t *testing.T) {
	be := &Backend{location: "s3://b"}
	h := backend.Handle{Type: backend.PackFile, Name: "ab"}
	read := func(data string, end error, length int64) ([]byte, error) {
		r := &bodyReader{b: be, h: h, body: &body{strings.NewReader(data), end}, left: length, exact: length > 0}
		return io.ReadAll(r)
	}
	if got, err := read("abcdef", io.EOF, 6); err != nil || string(got) != "abcdef" {
		t.Errorf("exact body: %q, %v", got, err)
	}
	if got, err := read("abcdef", io.EOF, 0); err != nil || string(got) != "abcdef" {
		t.Errorf("body to the end: %q, %v", got, err)
	}
	// The server ends the body early: the object is short, permanently.
	got, err := read("abc", io.EOF, 6)
	if !errors.Is(err, io.ErrUnexpectedEOF) || retry.IsTransient(err) || string(got) != "abc" {
		t.Errorf("short object: %q, %v (transient %v)", got, err, retry.IsTransient(err))
	}
	// The connection breaks: transient, so package retry resumes.
	for _, broken := range []error{io.ErrUnexpectedEOF, errors.New("connection reset by peer")} {
		for _, n := range []int64{0, 6} {
			_, err := read("abc", broken, n)
			if !retry.IsTransient(err) || !strings.Contains(err.Error(), "at offset 3") {
				t.Errorf("broken connection (%v, length %d): %v, transient %v", broken, n, err, retry.IsTransient(err))
			}
		}
	}
}

func TestNameOf(t *testing.T) {
	for _, c := range []struct {
		t           backend.FileType
		prefix, key string
		name        string
		ok          bool
	}{
		{backend.ConfigFile, "p/config", "p/config", "config", true},
		{backend.ConfigFile, "p/config", "p/configx", "", false},
		{backend.PackFile, "p/data/", "p/data/ab/abcd", "abcd", true},
		{backend.PackFile, "p/data/", "p/data/ab/cd", "", false},
		{backend.PackFile, "p/data/", "p/data/abcd", "", false},
		{backend.PackFile, "p/data/", "p/data/ab/", "", false},
		{backend.PackFile, "p/data/", "p/data/ab/ab/x", "", false},
		{backend.IndexFile, "p/index/", "p/index/1234", "1234", true},
		{backend.IndexFile, "p/index/", "p/index/12/34", "", false},
		{backend.IndexFile, "p/index/", "p/index/", "", false},
		{backend.IndexFile, "p/index/", "q/index/1", "", false},
	} {
		name, ok := nameOf(c.t, c.prefix, c.key)
		if name != c.name && c.ok || ok != c.ok {
			t.Errorf("nameOf(%s, %q, %q) = %q, %v; want %q, %v", c.t, c.prefix, c.key, name, ok, c.name, c.ok)
		}
	}
}

// FuzzNameOf: listed keys come from the store, so they are untrusted.
// Whatever a key is, nameOf does not panic, and a name it accepts maps
// back to exactly that key.
func FuzzNameOf(f *testing.F) {
	f.Add("data", "p", "p/data/ab/abcd")
	f.Add("index", "", "index/x")
	f.Add("config", "a/b", "a/b/config")
	f.Fuzz(func(t *testing.T, ft, prefix, key string) {
		b := &Backend{prefix: strings.Trim(prefix, "/")}
		typ := backend.FileType(ft)
		name, ok := nameOf(typ, b.typePrefix(typ), key)
		if !ok {
			return
		}
		k, err := b.key(backend.Handle{Type: typ, Name: name})
		if err != nil {
			t.Fatalf("nameOf(%q) accepted %q, which key() rejects: %v", key, name, err)
		}
		if k != key {
			t.Fatalf("nameOf(%q) = %q, which maps back to %q", key, name, k)
		}
	})
}

// TestStorageGoesAway: with the server stopped, a retried Save gives up
// in bounded time with a message that says so; after a restart it works.
func TestStorageGoesAway(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		s := startServer(t, k)
		be := retry.New(s.backend(t, plainBucket), retry.Options{Attempts: 2, Base: 10 * time.Millisecond, Max: 10 * time.Millisecond})
		ctx := context.Background()
		h := backend.Handle{Type: backend.PackFile, Name: "dead"}
		data := bytes.Repeat([]byte("p"), 1<<20)
		s.Stop(t)
		start := time.Now()
		err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data)))
		took := time.Since(start)
		if err == nil {
			t.Fatal("Save with the server stopped: no error")
		}
		if !strings.Contains(err.Error(), "giving up after 2 attempts") || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error does not tell what happened: %v", err)
		}
		if took > 20*time.Second {
			t.Errorf("giving up took %v", took)
		}
		t.Logf("gave up after %v: %v", took, err)
		s.Restart(t)
		if err := be.Save(ctx, h, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("Save after restart: %v", err)
		}
		if got := mustLoad(t, be, h); !bytes.Equal(got, data) {
			t.Error("data saved after restart reads back wrong")
		}
	})
}

// A version listing (delete markers come apart, so a key with only delete
// markers is not in it) comes grouped by key, newest first; each key
// reports its oldest version.
func TestVersionedLister(t *testing.T) {
	v := func(key, id string) types.ObjectVersion { return types.ObjectVersion{Key: &key, VersionId: &id} }
	listing := []types.ObjectVersion{v("a", "a3"), v("a", "a2"), v("a", "a1"), v("c", "c1"), v("d", "d1")}
	var got []string
	var l versionedLister
	for _, obj := range listing {
		if prev, ok := l.add(obj); ok {
			got = append(got, *prev.VersionId)
		}
	}
	if last, ok := l.flush(); ok {
		got = append(got, *last.VersionId)
	}
	if want := "a1 c1 d1"; strings.Join(got, " ") != want {
		t.Errorf("versions reported: %v, want %s", got, want)
	}
	var empty versionedLister
	if _, ok := empty.flush(); ok {
		t.Error("an empty listing reports a version")
	}
}

// A refusal names the operation, the permission, the key and the role
// whose documented policy grants it, and still wraps fs.ErrPermission.
func TestDeniedNamesRole(t *testing.T) {
	be := &Backend{location: "s3://b/p", identity: `profile "dst" (--s3-profile), access key ID ****ABCD`}
	refusal := apiError(http.StatusForbidden, "AccessDenied")
	for _, c := range []struct {
		action string
		typ    backend.FileType
		role   string
	}{
		{"s3:PutObjectLegalHold", backend.PackFile, RoleHoldOfficer},
		{"s3:PutObject", backend.HoldFile, RoleHoldOfficer},
		{"s3:PutObject", backend.KeyFile, RoleKeyAdmin},
		{"s3:PutObject", backend.PackFile, RoleWriter},
		{"s3:DeleteObjectVersion", backend.KeyFile, RoleKeyAdmin},
		{"s3:DeleteObjectVersion", backend.SnapshotFile, RoleOperator},
		{"s3:PutObjectRetention", backend.IndexFile, RoleWriter},
		{"s3:GetObjectVersion", backend.PackFile, RoleReader},
	} {
		h := backend.Handle{Type: c.typ, Name: "ab12"}
		key, _ := be.key(h)
		err := be.denied(refusal, c.action, h, key, "doing %s", h)
		msg := err.Error()
		for _, want := range []string{"doing " + h.String(), c.action, key, "which the " + c.role + " role", "s3://b/p", be.identity} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s on %s: %q does not say %q", c.action, c.typ, msg, want)
			}
		}
		if !errors.Is(err, fs.ErrPermission) {
			t.Errorf("%s on %s: does not wrap fs.ErrPermission", c.action, c.typ)
		}
		var op *opError
		if !errors.As(err, &op) || op.Transient() {
			t.Errorf("%s on %s: not a permanent opError: %#v", c.action, c.typ, err)
		}
	}
	// Anything but a refusal is wrap's.
	notFound := apiError(http.StatusNotFound, "NoSuchKey")
	if err := be.denied(notFound, "s3:GetObject", backend.Handle{Type: backend.PackFile, Name: "ab"}, "p/data/ab/ab", "loading"); !errors.Is(err, fs.ErrNotExist) || strings.Contains(err.Error(), "role") {
		t.Errorf("not found: %v", err)
	}
}
