package main

// End-to-end tests of Object Lock, legal holds and copies, through the
// binary against real S3 servers (MinIO, versitygw) on loopback (internal/miniotest).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/nestguard/nestguard/internal/miniotest"
)

// s3Env starts an S3 server of kind k, creates the buckets and points the
// nestguard runs of this test and its subtests at the server: every env
// that newEnv makes for them has the server's variables (testEnvVars).
func s3Env(t *testing.T, k miniotest.Kind, buckets map[string]bool) (*miniotest.Server, *s3.Client) {
	t.Helper()
	srv := miniotest.StartKind(t, k)
	for name, lock := range buckets {
		srv.MakeBucket(t, name, lock)
	}
	setTestEnv(t, srv.Env()...)
	return srv, srv.Client(t)
}

// s3Code returns the S3 error code of err, "" if it is none.
func s3Code(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// objVersion is one stored object: its key and the version nestguard wrote.
type objVersion struct{ key, id string }

// objects lists the objects under prefix, the oldest version of each.
func objects(t *testing.T, cl *s3.Client, bucket, prefix string) map[string]objVersion {
	t.Helper()
	out := make(map[string]objVersion)
	pages := s3.NewListObjectVersionsPaginator(cl, &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Versions { // delete markers come apart
			key := aws.ToString(v.Key)
			out[key] = objVersion{key, aws.ToString(v.VersionId)} // newest first: the last one listed is the oldest
		}
	}
	return out
}

func legalHold(t *testing.T, cl *s3.Client, bucket string, v objVersion) bool {
	t.Helper()
	out, err := cl.GetObjectLegalHold(context.Background(), &s3.GetObjectLegalHoldInput{Bucket: &bucket, Key: &v.key, VersionId: &v.id})
	if err != nil {
		if s3Code(err) == "NoSuchObjectLockConfiguration" {
			return false
		}
		t.Fatalf("legal hold of %s: %v", v.key, err)
	}
	return out.LegalHold != nil && out.LegalHold.Status == types.ObjectLockLegalHoldStatusOn
}

func retainUntil(t *testing.T, cl *s3.Client, bucket string, v objVersion) (string, time.Time) {
	t.Helper()
	out, err := cl.GetObjectRetention(context.Background(), &s3.GetObjectRetentionInput{Bucket: &bucket, Key: &v.key, VersionId: &v.id})
	if err != nil || out.Retention == nil || out.Retention.RetainUntilDate == nil {
		t.Fatalf("retention of %s: %v", v.key, err)
	}
	return string(out.Retention.Mode), *out.Retention.RetainUntilDate
}

func removeVersion(cl *s3.Client, bucket string, v objVersion) error {
	_, err := cl.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: &bucket, Key: &v.key, VersionId: &v.id})
	return err
}

func TestS3ObjectLockHoldsAndCopies(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel() // each server kind at once
		_, cl := s3Env(t, k, map[string]bool{"worm": true, "gov": true, "plain": false, "region2": false})
		t.Run("compliance", func(t *testing.T) { testCompliance(t, cl) })
		t.Run("holds", func(t *testing.T) { testLegalHolds(t, k, cl) })
		t.Run("copy", func(t *testing.T) { testCopy(t, cl) })
		t.Run("forget", testForgetObjectLock)
	})
}

// testForgetObjectLock: forget keeps a snapshot whose snapshot object
// Object Lock still retains, saying until when, and removes it after.
func testForgetObjectLock(t *testing.T) {
	e := newEnv(t)
	e.repo = "s3://gov/forget"
	// Long enough that the backups and the first forget finish inside it
	// on a loaded machine (4s was not, beside the rest of the suite).
	e.must("init", "--object-lock", "governance", "--min-retention", "30s")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 51, 10, 20_000)
	old := e.backupJSON(src)["snapshot"].(string)
	writeTree(t, filepath.Join(src, "more"), 52, 5, 20_000)
	e.backupJSON(src)

	d := e.forgetJSON("--keep-last", "1")
	var until time.Time
	for _, g := range d.Groups {
		for _, s := range g.Snapshots {
			if s.ID != old {
				continue
			}
			if s.Action != "retain" || len(s.Vetoes) != 1 || s.Vetoes[0].Kind != "object-lock" || s.Vetoes[0].Until.Before(time.Now()) ||
				!strings.Contains(s.Vetoes[0].Detail, s.Vetoes[0].Until.UTC().Format(time.RFC3339)) {
				t.Fatalf("snapshot under retention: %+v", s)
			}
			until = s.Vetoes[0].Until
		}
	}
	if d.Retained != 1 || d.Removed != 0 || until.IsZero() {
		t.Fatalf("forget under retention: %+v", d)
	}
	if r := e.run("forget", old[:8]); r.code != 4 || !strings.Contains(r.stderr, old[:8]) || !strings.Contains(r.stderr, "Object Lock") ||
		!strings.Contains(r.stderr, until.UTC().Format(time.RFC3339)) {
		t.Errorf("forget by ID under retention: exit %d: %s", r.code, r.stderr)
	}
	if n := len(e.snapshotTimes()); n != 2 {
		t.Fatalf("%d snapshots left, want 2", n)
	}
	time.Sleep(time.Until(until) + 1500*time.Millisecond)
	if d := e.forgetJSON("--keep-last", "1"); d.Removed != 1 || d.Retained != 0 {
		t.Errorf("forget after the retention: %+v", d)
	}
	if _, ok := e.snapshotTimes()[old]; ok {
		t.Error("snapshot still there after its retention ended")
	}
	e.must("verify")
}

func testCompliance(t *testing.T, cl *s3.Client) {
	e := newEnv(t)
	e.repo = "s3://plain/repo"
	if r := e.run("init", "--object-lock", "compliance", "--min-retention", "1d"); r.code != 1 || !strings.Contains(r.stderr, "has no Object Lock") ||
		!strings.Contains(r.stderr, "object-lock-enabled-for-bucket") {
		t.Errorf("init with --object-lock on a bucket without Object Lock: exit %d: %s", r.code, r.stderr)
	}
	if got := objects(t, cl, "plain", "repo/"); len(got) != 0 {
		t.Errorf("refused init wrote %d objects", len(got))
	}
	if r := e.run("init", "--object-lock", "compliance", "--min-retention", "1w"); r.code != 2 {
		t.Errorf("bad retention: exit %d: %s", r.code, r.stderr)
	}

	e.repo = "s3://worm/repo"
	e.must("init", "--object-lock", "compliance", "--min-retention", "1d")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 11, 40, 200_000)
	start := time.Now()
	e.backupJSON(src)
	writeTree(t, filepath.Join(src, "more"), 12, 10, 200_000)
	out := e.must("backup", src)
	if !strings.Contains(out, "retention:") {
		t.Errorf("backup does not report the retention it applied:\n%s", out)
	}

	objs := objects(t, cl, "worm", "repo/")
	if len(objs) < 6 {
		t.Fatalf("only %d objects stored", len(objs))
	}
	min := start.Add(24*time.Hour - time.Minute)
	for _, v := range objs {
		mode, until := retainUntil(t, cl, "worm", v)
		if mode != "COMPLIANCE" || until.Before(min) {
			t.Errorf("%s: retention %s until %v, want COMPLIANCE until at least %v", v.key, mode, until, min)
		}
		// Deleting the version nestguard wrote fails, even for root.
		if err := removeVersion(cl, "worm", v); err == nil {
			t.Errorf("%s: deleted through the S3 API", v.key)
		}
		// A conditional overwrite, as nestguard itself writes, is refused.
		if _, err := cl.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("worm"), Key: &v.key, Body: bytes.NewReader([]byte("x")), IfNoneMatch: aws.String("*")}); err == nil {
			t.Errorf("%s: overwritten through the S3 API", v.key)
		}
	}
	// A plain overwrite or delete only adds a version or a delete marker
	// beside the locked version: the repository still reads as written.
	n := 0
	for _, v := range objs {
		if strings.Contains(v.key, "/snapshots/") || strings.Contains(v.key, "/index/") {
			if _, err := cl.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("worm"), Key: &v.key, Body: bytes.NewReader([]byte("garbage"))}); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Contains(v.key, "/data/") && n < 2 {
			n++
			if _, err := cl.DeleteObject(context.Background(), &s3.DeleteObjectInput{Bucket: aws.String("worm"), Key: &v.key}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.must("verify", "--read-data")
	tgt := filepath.Join(e.dir, "restore")
	e.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))
}

func testLegalHolds(t *testing.T, k miniotest.Kind, cl *s3.Client) {
	e := newEnv(t)
	e.repo = "s3://gov/repo"
	e.must("init", "--object-lock", "governance", "--min-retention", "5s")
	a, b := filepath.Join(e.dir, "a"), filepath.Join(e.dir, "b")
	writeTree(t, a, 21, 20, 150_000)
	writeTree(t, b, 22, 20, 150_000)
	snapA := e.backupJSON(a)["snapshot"].(string)
	ofA := objects(t, cl, "gov", "repo/")
	e.backupJSON(b)
	ofB := make(map[string]objVersion) // written by b's backup only
	for k, v := range objects(t, cl, "gov", "repo/") {
		if _, ok := ofA[k]; !ok {
			ofB[k] = v
		}
	}
	// The audit log belongs to no snapshot: a hold does not cover it.
	for k := range ofA {
		if strings.HasPrefix(k, "repo/audit/") {
			delete(ofA, k)
		}
	}
	for k := range ofB {
		if strings.HasPrefix(k, "repo/audit/") {
			delete(ofB, k)
		}
	}
	if len(ofB) < 3 {
		t.Fatalf("backup b wrote %d objects", len(ofB))
	}

	var add map[string]any
	if err := json.Unmarshal([]byte(e.must("hold", "add", snapA[:8], "--case", "SEC-17", "--reason", "subpoena 2024-03", "--json")), &add); err != nil {
		t.Fatal(err)
	}
	if add["enforced"] != true || int(add["changed"].(float64)) != len(ofA) {
		t.Errorf("hold add: %v; snapshot a has %d objects", add, len(ofA))
	}
	for _, v := range ofA {
		if !legalHold(t, cl, "gov", v) {
			t.Errorf("%s: no legal hold", v.key)
		}
	}
	for _, v := range ofB {
		if legalHold(t, cl, "gov", v) {
			t.Errorf("%s of the other snapshot is held", v.key)
		}
	}
	records := objects(t, cl, "gov", "repo/holds/")
	if len(records) != 1 {
		t.Fatalf("%d hold records, want 1", len(records))
	}
	for _, v := range records {
		if !legalHold(t, cl, "gov", v) {
			t.Errorf("hold record %s: no legal hold", v.key)
		}
	}
	if r := e.run("hold", "add", snapA[:8], "--case", "SEC-18"); r.code != 2 {
		t.Errorf("hold without --reason: exit %d", r.code)
	}

	// Past the end of every retention: held objects still cannot be
	// deleted, the others can (no governance bypass is used).
	var last time.Time
	for _, objs := range []map[string]objVersion{ofA, ofB} {
		for _, v := range objs {
			if _, until := retainUntil(t, cl, "gov", v); until.After(last) {
				last = until
			}
		}
	}
	time.Sleep(time.Until(last) + 1500*time.Millisecond)
	for _, v := range ofA {
		if k == miniotest.Versity {
			// versitygw v1.8.0 lets an object under a legal hold be
			// deleted once its retention has ended (checked by hand with
			// curl): the server's flaw, documented in docs/storage.md.
			// Deleting would only destroy the repository this test goes
			// on using.
			break
		}
		if err := removeVersion(cl, "gov", v); err == nil {
			t.Errorf("%s: deleted while under legal hold", v.key)
		}
	}
	for _, v := range records {
		if k == miniotest.Versity {
			break // as above
		}
		if err := removeVersion(cl, "gov", v); err == nil {
			t.Errorf("hold record %s: deleted while its hold is active", v.key)
		}
	}
	for _, v := range ofB {
		if err := removeVersion(cl, "gov", v); err != nil {
			t.Errorf("%s: not deletable after its retention ended: %v", v.key, err)
		}
	}

	if r := e.run("hold", "release", snapA[:8], "--case", "SEC-99", "--reason", "wrong case"); r.code != 1 || !strings.Contains(r.stderr, "no hold") {
		t.Errorf("release of an unknown case: exit %d: %s", r.code, r.stderr)
	}
	released := time.Now()
	e.must("hold", "release", snapA[:8], "--case", "SEC-17", "--reason", "case closed")
	for _, v := range ofA {
		if legalHold(t, cl, "gov", v) {
			t.Errorf("%s: still held after release", v.key)
		}
	}
	// The records of a released hold are kept for the minimum retention
	// (5s here) from the release, no longer under a legal hold.
	for _, v := range objects(t, cl, "gov", "repo/holds/") {
		if legalHold(t, cl, "gov", v) {
			t.Errorf("hold record %s: still held after release", v.key)
		}
		if _, until := retainUntil(t, cl, "gov", v); until.Before(released.Add(5 * time.Second)) {
			t.Errorf("hold record %s retained until %s, less than the minimum retention after the release at %s", v.key, until, released)
		}
	}
	var list struct {
		Active  []map[string]any `json:"active"`
		History []map[string]any `json:"history"`
	}
	if err := json.Unmarshal([]byte(e.must("hold", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Active) != 0 || len(list.History) != 2 || list.History[1]["action"] != "release" ||
		list.History[1]["reason"] != "case closed" || list.History[0]["case"] != "SEC-17" || list.History[1]["user"] == "" {
		t.Errorf("hold list: %+v", list)
	}
	if txt := e.must("hold", "list"); !strings.Contains(txt, "release") || !strings.Contains(txt, "SEC-17") {
		t.Errorf("hold list:\n%s", txt)
	}
}

func testCopy(t *testing.T, cl *s3.Client) {
	from := newEnv(t)
	from.repo = "s3://worm/copysrc"
	from.must("init")
	src := filepath.Join(from.dir, "src")
	writeTree(t, src, 31, 60, 400_000)
	from.must("backup", src)
	writeTree(t, filepath.Join(src, "later"), 32, 10, 400_000)
	from.must("backup", src)

	to := newEnv(t)
	to.repo = "s3://region2/copy"
	to.must("init")
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+from.pass)
	var res map[string]any
	if err := json.Unmarshal([]byte(to.must("copy", "--from", from.repo, "--all", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res["copied"].([]any)) != 2 {
		t.Fatalf("copy: %v", res)
	}
	t.Logf("copy S3 -> S3: %.1f MB read in %.2fs: %.1f MB/s", res["bytes_read"].(float64)/1e6, res["duration_seconds"], res["read_mb_per_s"])
	to.must("verify", "--read-data")
	tgt := filepath.Join(to.dir, "restore")
	to.must("restore", "latest", "--target", tgt)
	compareTrees(t, src, filepath.Join(tgt, src))

	// Again: nothing to transfer.
	if err := json.Unmarshal([]byte(to.must("copy", "--from", from.repo, "--all", "--json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res["copied"].([]any)) != 0 || len(res["skipped"].([]any)) != 2 || res["bytes_read"].(float64) != 0 || res["blobs_new"].(float64) != 0 {
		t.Errorf("second copy transferred something: %v", res)
	}

	// From a local directory to S3.
	local := newEnv(t)
	local.must("init")
	local.must("backup", src)
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+local.pass)
	to.must("copy", "--from", local.repo, "latest")
	to.must("verify")
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(to.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 3 {
		t.Fatalf("destination snapshots: %v, %d", err, len(snaps))
	}
	tgt2 := filepath.Join(to.dir, "restore2")
	to.must("restore", snaps[2]["short_id"].(string), "--target", tgt2)
	compareTrees(t, src, filepath.Join(tgt2, src))
}

// On storage that cannot enforce retention (a local directory), Object
// Lock is refused and a hold is only recorded, with an error unless
// --record-only accepts that.
func TestLockOnLocalStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.run("init", "--object-lock", "governance", "--min-retention", "7y"); r.code != 1 || !strings.Contains(r.stderr, "cannot enforce retention") {
		t.Errorf("init --object-lock on a directory: exit %d: %s", r.code, r.stderr)
	}
	e.must("init")
	src := filepath.Join(e.dir, "src")
	writeTree(t, src, 41, 5, 10_000)
	sn := e.backupJSON(src)["snapshot"].(string)
	// Refused, and nothing recorded: the exit code and the history agree.
	r := e.run("hold", "add", sn[:8], "--case", "C-1", "--reason", "audit")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot enforce legal holds") || !strings.Contains(r.stderr, "--record-only") ||
		!strings.Contains(r.stderr, "no hold was recorded") {
		t.Errorf("hold add on a directory: exit %d: %s", r.code, r.stderr)
	}
	var none struct{ Active, History []map[string]any }
	if err := json.Unmarshal([]byte(e.must("hold", "list", "--json")), &none); err != nil {
		t.Fatal(err)
	}
	if len(none.Active) != 0 || len(none.History) != 0 {
		t.Errorf("a refused hold add recorded a hold: %+v", none)
	}
	r = e.run("hold", "add", sn[:8], "--case", "C-1", "--reason", "audit", "--record-only")
	if r.code != 0 || !strings.Contains(r.stderr, "recorded only") || !strings.Contains(r.stderr, "nothing stops") {
		t.Errorf("hold add --record-only: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("hold", "add", sn[:8], "--case", "C-2"); r.code != 2 {
		t.Errorf("hold add without --reason: exit %d: %s", r.code, r.stderr)
	}
	var list struct{ Active, History []map[string]any }
	if err := json.Unmarshal([]byte(e.must("hold", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Active) != 1 || len(list.History) != 1 || list.Active[0]["enforced"] != false {
		t.Errorf("hold list: %+v", list)
	}
}

// TestS3BucketDefaultRetention: a bucket's default retention longer than
// --min-retention must not be replaced by the shorter one (each upload's
// own retention replaces the bucket's default): init uses the longer and
// says so.
func TestS3BucketDefaultRetention(t *testing.T) {
	t.Parallel()
	miniotest.Each(t, func(t *testing.T, k miniotest.Kind) {
		t.Parallel() // each server kind at once
		_, cl := s3Env(t, k, map[string]bool{"deflock": true})
		setDefaultRetention := func(days int32) error {
			_, err := cl.PutObjectLockConfiguration(context.Background(), &s3.PutObjectLockConfigurationInput{
				Bucket: aws.String("deflock"),
				ObjectLockConfiguration: &types.ObjectLockConfiguration{
					ObjectLockEnabled: types.ObjectLockEnabledEnabled,
					Rule:              &types.ObjectLockRule{DefaultRetention: &types.DefaultRetention{Mode: types.ObjectLockRetentionModeGovernance, Days: &days}},
				},
			})
			return err
		}
		if err := setDefaultRetention(3); err != nil {
			t.Fatalf("setting the bucket's default retention: %v", err)
		}
		e := newEnv(t)
		e.repo = "s3://deflock/short"
		r := e.run("init", "--object-lock", "governance", "--min-retention", "1d")
		if r.code != 0 || !strings.Contains(r.stderr, "default retention stricter") || !strings.Contains(r.stdout, "at least 3d") {
			t.Fatalf("init with a shorter --min-retention than the bucket's default: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
		src := filepath.Join(e.dir, "src")
		writeTree(t, src, 51, 3, 10_000)
		e.backupJSON(src)
		for _, v := range objects(t, cl, "deflock", "short/") {
			if _, until := retainUntil(t, cl, "deflock", v); until.Before(time.Now().Add(3*24*time.Hour - time.Minute)) {
				t.Errorf("%s retained until %s, shorter than the bucket's default of 3 days", v.key, until)
			}
		}

		e.repo = "s3://deflock/long"
		r = e.run("init", "--object-lock", "governance", "--min-retention", "5d")
		if r.code != 0 || strings.Contains(r.stderr, "stricter") || !strings.Contains(r.stdout, "at least 5d") {
			t.Errorf("init with a longer --min-retention than the bucket's default: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}

		// The bucket's default made longer after init: new objects get it.
		if err := setDefaultRetention(7); err != nil {
			t.Fatalf("setting the bucket's default retention: %v", err)
		}
		before := objects(t, cl, "deflock", "long/")
		writeTree(t, filepath.Join(src, "more"), 52, 3, 10_000)
		if r := e.run("backup", src); r.code != 0 || !strings.Contains(r.stderr, "default retention is stricter") {
			t.Errorf("backup after the bucket's default grew: exit %d: %s", r.code, r.stderr)
		}
		for key, v := range objects(t, cl, "deflock", "long/") {
			if _, old := before[key]; old {
				continue
			}
			if _, until := retainUntil(t, cl, "deflock", v); until.Before(time.Now().Add(7*24*time.Hour - time.Minute)) {
				t.Errorf("%s (new) retained until %s, shorter than the bucket's default of 7 days", v.key, until)
			}
		}
	})
}

// faultProxy is a plain-HTTP loopback proxy in front of srv that refuses
// (403 AccessDenied) the requests refuse picks, such as PutObjectRetention:
// a retention extension that fails after the data is stored.
func faultProxy(t *testing.T, srv *miniotest.Server, refuse func(*http.Request) bool) string {
	t.Helper()
	p := srv.Proxy(t)
	p.Set(func(w http.ResponseWriter, r *http.Request) bool {
		if !refuse(r) {
			return false
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>`))
		return true
	})
	return p.URL
}

// TestS3RetentionResumable: when extending retention fails after a copy,
// the copy is saved and the command fails naming 'retention apply'; a copy
// run again skips the snapshot as copied, and 'retention apply' finishes
// the retention.
func TestS3RetentionResumable(t *testing.T) {
	t.Parallel()
	srv, cl := s3Env(t, miniotest.MinIO, map[string]bool{"worm": true})
	var fail atomic.Bool
	to := newEnv(t)
	to.repo = "s3://worm/dst"
	proxy := faultProxy(t, srv, func(r *http.Request) bool {
		return fail.Load() && r.Method == http.MethodPut && r.URL.Query().Has("retention")
	})
	to.extraEnv = append(to.extraEnv, "NESTGUARD_S3_ENDPOINT="+proxy)
	to.must("init", "--object-lock", "governance", "--min-retention", "1d")
	// The copy's snapshot is newer than the destination's config and key
	// slots, whose retention it must therefore extend.
	time.Sleep(1100 * time.Millisecond)
	from := newEnv(t)
	from.must("init")
	src := filepath.Join(from.dir, "src")
	writeTree(t, src, 61, 5, 20_000)
	from.must("backup", src)
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(from.must("snapshots", "--json")), &snaps); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots: %v", err)
	}
	snapTime, err := time.Parse(time.RFC3339Nano, snaps[0]["time"].(string))
	if err != nil {
		t.Fatal(err)
	}
	to.extraEnv = append(to.extraEnv, "NESTGUARD_FROM_PASSWORD="+from.pass)

	fail.Store(true)
	r := to.run("copy", "--from", from.repo, "latest")
	if r.code != 1 || !strings.Contains(r.stderr, "retention apply") {
		t.Fatalf("copy whose retention fails: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fail.Store(false)
	if out := to.must("copy", "--from", from.repo, "latest"); !strings.Contains(out, "already copied") {
		t.Errorf("copy again: %s", out)
	}
	config := objects(t, cl, "worm", "dst/config")["dst/config"]
	if _, until := retainUntil(t, cl, "worm", config); !until.Before(snapTime.Add(24 * time.Hour)) {
		t.Fatalf("config already retained until %s: the failure was not injected", until)
	}
	out := to.must("retention", "apply")
	if !strings.Contains(out, "1 snapshots") {
		t.Errorf("retention apply: %s", out)
	}
	checkJSON(t, "retention apply", to.must("retention", "apply", "--json"), "json_version snapshots objects extended complete")
	for _, v := range objects(t, cl, "worm", "dst/") {
		if strings.HasPrefix(v.key, "dst/holds/") || strings.HasPrefix(v.key, "dst/audit/") {
			continue // no snapshot needs them
		}
		if _, until := retainUntil(t, cl, "worm", v); until.Before(snapTime.Add(24 * time.Hour)) {
			t.Errorf("%s retained until %s after retention apply; the copy needs %s", v.key, until, snapTime.Add(24*time.Hour))
		}
	}
}
