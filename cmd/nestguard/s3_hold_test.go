package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// A hold recorded as enforced whose objects do not all carry an S3 legal
// hold (a 'hold add' killed part way) is reported by 'hold list' (exit 1,
// "partial", with the command that finishes it); running 'hold add'
// again finishes it.
func TestS3PartialLegalHoldIsReported(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel()
		_, cl := s3Env(t, k, map[string]bool{"gov": true})
		e := newEnv(t)
		e.repo = "s3://gov/repo"
		e.must("init", "--object-lock", "governance", "--min-retention", "5s")
		src := filepath.Join(e.dir, "src")
		writeTree(t, src, 46, 10, 200_000)
		snap := e.backupJSON(src)["snapshot"].(string)
		e.must("hold", "add", snap[:8], "--case", "KX", "--reason", "r")
		e.must("hold", "list")

		// As a killed 'hold add' leaves it: one pack without its hold.
		var pack objVersion
		for _, v := range objects(t, cl, "gov", "repo/data/") {
			pack = v
			break
		}
		if pack.key == "" {
			t.Fatal("no packs")
		}
		if _, err := cl.PutObjectLegalHold(context.Background(), &s3.PutObjectLegalHoldInput{Bucket: aws.String("gov"), Key: &pack.key, VersionId: &pack.id,
			LegalHold: &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOff}}); err != nil {
			t.Fatal(err)
		}
		r := e.run("hold", "list")
		if r.code != 1 || !strings.Contains(r.stdout, "partial: 1 of") || !strings.Contains(r.stderr, "run 'nestguard hold add "+snap[:8]) {
			t.Errorf("hold list with a partial legal hold: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
		}
		r = e.run("--json", "hold", "list")
		var out struct {
			Partial []struct {
				Snapshot, Case string
				Unheld         int
			} `json:"partial"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("hold list --json: %v\n%s", err, r.stdout)
		}
		if r.code != 1 || len(out.Partial) != 1 || out.Partial[0].Snapshot != snap || out.Partial[0].Case != "KX" || out.Partial[0].Unheld != 1 {
			t.Errorf("hold list --json with a partial legal hold: exit %d, partial %+v", r.code, out.Partial)
		}

		e.must("hold", "add", snap[:8], "--case", "KX", "--reason", "r")
		if !legalHold(t, cl, "gov", pack) {
			t.Errorf("%s: no legal hold after 'hold add' ran again", pack.key)
		}
		e.must("hold", "list")
	})
}

// A hold whose legal holds were cleared outside nestguard and whose
// snapshot was then deleted (its retention over) is not "in force":
// 'hold list' fails naming it, and the compliance report's legal-holds
// control fails (it passed, trusting the record's "enforced"; found by a
// hostile test).
func TestS3HoldClearedOutsideFailsReport(t *testing.T) {
	t.Parallel()
	_, cl := s3Env(t, miniotest.MinIO, map[string]bool{"worm": true})
	e := newEnv(t)
	e.repo = "s3://worm/repo"
	e.must("init", "--object-lock", "governance", "--min-retention", "2s")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 3, 3, 10_000)
	snap := e.backupJSON(src)["snapshot"].(string)
	e.must("hold", "add", snap[:8], "--case", "SEC-1", "--reason", "subpoena")
	time.Sleep(4 * time.Second) // the retention ends; the legal holds remain

	ctx := context.Background()
	off := &types.ObjectLockLegalHold{Status: types.ObjectLockLegalHoldStatusOff}
	for _, v := range objects(t, cl, "worm", "repo/") {
		if _, err := cl.PutObjectLegalHold(ctx, &s3.PutObjectLegalHoldInput{Bucket: aws.String("worm"), Key: aws.String(v.key), VersionId: aws.String(v.id), LegalHold: off}); err != nil {
			t.Fatalf("clearing the legal hold of %s: %v", v.key, err)
		}
	}
	key := "repo/snapshots/" + snap
	v := objects(t, cl, "worm", key)[key]
	if _, err := cl.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String("worm"), Key: aws.String(key), VersionId: aws.String(v.id)}); err != nil {
		t.Fatalf("deleting the held snapshot object: %v", err)
	}
	if r := e.run("hold", "list"); r.code == 0 || !strings.Contains(r.stderr, "SEC-1") {
		t.Errorf("hold list with the hold's snapshot gone and its legal holds cleared: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r := e.run("report", "compliance", "--json")
	var doc struct {
		Controls []struct {
			ID, Status, Summary string
		} `json:"controls"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("report compliance --json: exit %d: %v\n%s", r.code, err, r.stderr)
	}
	for _, c := range doc.Controls {
		if c.ID == "legal-holds" && c.Status != "fail" {
			t.Errorf("legal-holds control %s (%q) though the storage holds nothing and the held snapshot was deleted", c.Status, c.Summary)
		}
	}
}

// 'hold add' that could not place a legal hold prints only what it
// placed (hostile-s3 L3: "legal hold placed on 0 objects and on the
// hold's record", then "placing a legal hold on its record failed"):
// nothing when even the record's hold was refused; the record and the
// objects held so far when the snapshot's objects were refused.
func TestS3HoldAddRefusedSaysOnlyWhatWasPlaced(t *testing.T) {
	t.Parallel()
	srv, _ := s3Env(t, miniotest.MinIO, map[string]bool{"locked": true})
	e := newEnv(t)
	e.repo = "s3://locked/repo"
	e.must("init", "--object-lock", "governance", "--min-retention", "1s")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 3, 3, 10_000)
	snap := e.backupJSON(src)["snapshot"].(string)

	// Legal holds refused (403, as to a role without
	// s3:PutObjectLegalHold): every one, or all but the first (the
	// record's, placed first).
	var allow atomic.Int64
	p := srv.Proxy(t)
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPut || !r.URL.Query().Has("legal-hold") || allow.Add(-1) >= 0 {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`))
		return true
	})
	denied := *e
	denied.extraEnv = append(append([]string{}, e.extraEnv...), "NESTGUARD_S3_ENDPOINT="+p.URL)

	r := denied.run("hold", "add", snap[:8], "--case", "C1", "--reason", "r")
	if r.code != 1 || strings.Contains(r.stdout, "legal hold placed") || !strings.Contains(r.stderr, "placing a legal hold on its record failed") {
		t.Errorf("hold add, every legal hold refused: exit %d, want 1 and no \"legal hold placed\"\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	allow.Store(1)
	r = denied.run("hold", "add", snap[:8], "--case", "C2", "--reason", "r")
	if r.code != 1 || !strings.Contains(r.stdout, "legal hold placed on the hold's record and on 0 of the snapshot's ") || !strings.Contains(r.stderr, "placing legal holds failed after 0 of") {
		t.Errorf("hold add, the snapshot's legal holds refused: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}
