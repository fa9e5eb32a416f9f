package miniotest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// TestRetentionAnswerForms reads an object's retention from a server that
// answers as AWS does (<Retention>) and from one that answers as versitygw
// does (<ObjectLockRetention>): both must be understood.
func TestRetentionAnswerForms(t *testing.T) {
	for _, root := range []string{"Retention", "ObjectLockRetention"} {
		t.Run(root, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !r.URL.Query().Has("retention") {
					http.Error(w, "unexpected request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/xml")
				w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` +
					`<` + root + ` xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>COMPLIANCE</Mode>` +
					`<RetainUntilDate>2032-11-25T02:51:56Z</RetainUntilDate></` + root + `>`))
			}))
			defer srv.Close()
			c, err := minio.New(strings.TrimPrefix(srv.URL, "http://"), &minio.Options{
				Creds:        credentials.NewStaticV4("k", "secretsecret", ""),
				Transport:    compatTransport(nil),
				Region:       "us-east-1",
				BucketLookup: minio.BucketLookupPath,
			})
			if err != nil {
				t.Fatal(err)
			}
			mode, until, err := c.GetObjectRetention(context.Background(), "bkt", "p/config", "")
			if err != nil {
				t.Fatalf("GetObjectRetention: %v", err)
			}
			want := time.Date(2032, 11, 25, 2, 51, 56, 0, time.UTC)
			if mode == nil || *mode != minio.Compliance || until == nil || !until.Equal(want) {
				t.Errorf("got %v until %v, want COMPLIANCE until %v", mode, until, want)
			}
		})
	}
}

func TestNormalizeRetentionLeavesOthersAlone(t *testing.T) {
	for _, body := range []string{
		`<Retention><Mode>GOVERNANCE</Mode></Retention>`,
		`not xml at all`,
		`<Other><Mode>GOVERNANCE</Mode></Other>`,
	} {
		if got := string(normalizeRetention([]byte(body))); got != body {
			t.Errorf("normalizeRetention(%q) = %q, want it unchanged", body, got)
		}
	}
}
