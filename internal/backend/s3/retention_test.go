package s3

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/nestguard/nestguard/internal/backend"
)

// TestRetentionAnswerForms reads an object's retention from a server that
// answers as AWS does (<Retention>) and from one that answers as versitygw
// does (<ObjectLockRetention>): both must be understood.
func TestRetentionAnswerForms(t *testing.T) {
	for _, root := range []string{"Retention", "ObjectLockRetention"} {
		t.Run(root, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				w.Header().Set("Content-Type", "application/xml")
				switch {
				case r.Method == http.MethodHead: // the bucket
				case q.Has("versioning"):
					w.Write([]byte(`<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"></VersioningConfiguration>`))
				case q.Has("object-lock"):
					w.Write([]byte(`<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>`))
				case q.Has("retention"):
					w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?>` +
						`<` + root + ` xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>COMPLIANCE</Mode>` +
						`<RetainUntilDate>2032-11-25T02:51:56Z</RetainUntilDate></` + root + `>`))
				case q.Has("legal-hold"):
					w.Write([]byte(`<LegalHold xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>ON</Status></LegalHold>`))
				default:
					http.Error(w, "unexpected request", http.StatusBadRequest)
				}
			}))
			defer srv.Close()
			be, err := New(context.Background(), Config{
				Endpoint: srv.URL, Bucket: "bkt", Prefix: "p", PathStyle: true, Region: "us-east-1",
				Creds: credentials.NewStaticCredentialsProvider("k", "secretsecret", ""),
			})
			if err != nil {
				t.Fatal(err)
			}
			r, err := be.Retention(context.Background(), backend.Handle{Type: backend.ConfigFile})
			if err != nil {
				t.Fatalf("Retention: %v", err)
			}
			want := time.Date(2032, 11, 25, 2, 51, 56, 0, time.UTC)
			if r.Mode != backend.Compliance || !r.Until.Equal(want) || !r.LegalHold {
				t.Errorf("got %+v, want COMPLIANCE until %v with a legal hold", r, want)
			}
		})
	}
}
