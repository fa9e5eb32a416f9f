package miniotest

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestBinaryFromEnv(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "minio")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MINIO_BIN", fake)
	if got := Binary(); got != fake {
		t.Errorf("Binary() with MINIO_BIN=%s: %q", fake, got)
	}
	if err := os.Chmod(fake, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Binary(); got != "" {
		t.Errorf("Binary() with a MINIO_BIN that is not executable: %q, want \"\"", got)
	}
}

func TestLogTail(t *testing.T) {
	l := &logTail{max: 16}
	io.WriteString(l, "first line\nsecond\n")
	io.WriteString(l, "third\n")
	if got := l.String(); got != "second\nthird\n" {
		t.Errorf("tail = %q, want the last complete lines", got)
	}
}

// TestServer starts a server, stores an object through its client, and
// checks that the object survives Stop and Restart and that Env points at
// the server.
func TestServer(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s.MakeBucket(t, "plain", false)
	s.MakeBucket(t, "locked", true)
	c := s.Client(t)

	lock, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String("locked")})
	if err != nil || lock.ObjectLockConfiguration == nil || lock.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		t.Errorf("Object Lock of bucket locked: %+v, %v", lock, err)
	}
	if _, err := c.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: aws.String("plain")}); err == nil {
		t.Error("bucket plain reports an Object Lock configuration")
	}

	data := []byte("kept across a restart")
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("plain"), Key: aws.String("a/b"), Body: bytes.NewReader(data)}); err != nil {
		t.Fatalf("PutObject: %v", err)
	}
	s.Stop(t)
	if s.Running() {
		t.Fatal("Running after Stop")
	}
	// The SDK retries a refused connection: a short deadline ends that.
	short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancelShort()
	if _, err := c.HeadObject(short, &s3.HeadObjectInput{Bucket: aws.String("plain"), Key: aws.String("a/b")}); err == nil {
		t.Fatal("HeadObject succeeded against a stopped server")
	}
	s.Restart(t)
	obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("plain"), Key: aws.String("a/b")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("after Restart: %q, %v", got, err)
	}

	env := strings.Join(s.Env(), "\n")
	for _, want := range []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "NESTGUARD_S3_ENDPOINT=" + s.Endpoint, "NESTGUARD_CA_CERT=" + s.CACert} {
		if !strings.Contains(env, want) {
			t.Errorf("Env lacks %s", want)
		}
	}
	if !strings.HasPrefix(s.Endpoint, "127.0.0.1:") {
		t.Errorf("Endpoint %s is not on loopback", s.Endpoint)
	}
}
