package copier

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nestguard/nestguard/internal/archiver"
	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/checker"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/pgmeta"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// writeFiles writes n files of random data into dir, in subdirectories.
func writeFiles(t testing.TB, dir string, seed uint64, n, size int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("d%d", i%4), fmt.Sprintf("e%d", i%2))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, size/2+rng.IntN(size))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d", i)), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
}

func backup(t testing.TB, r *repository.Repository, dir string) *snapshot.Snapshot {
	t.Helper()
	sn, ferrs, err := archiver.Backup(context.Background(), r, []string{dir}, archiver.BackupOptions{})
	if err != nil || len(ferrs) > 0 {
		t.Fatalf("backup: %v %v", err, ferrs)
	}
	return sn
}

// dump describes every node of a snapshot with its content's hash, as a
// restore would see it.
func dump(t *testing.T, r *repository.Repository, root id.ID) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := tree.Walk(context.Background(), r, root, func(p string, n *tree.Node) error {
		h := sha256.New()
		for _, b := range n.Content {
			data, err := r.LoadBlob(context.Background(), b, nil)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		out[p] = fmt.Sprintf("%s %v %d %s %s", n.Type, n.Mode, n.Size, n.ModTime, hex.EncodeToString(h.Sum(nil)))
		return nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameContent(t *testing.T, src *repository.Repository, a id.ID, dst *repository.Repository, b id.ID) {
	t.Helper()
	da, db := dump(t, src, a), dump(t, dst, b)
	if len(da) != len(db) || len(da) == 0 {
		t.Fatalf("source has %d entries, copy %d", len(da), len(db))
	}
	for p, v := range da {
		if db[p] != v {
			t.Errorf("%s:\n  source %s\n  copy   %s", p, v, db[p])
		}
	}
}

func verify(t *testing.T, r *repository.Repository) {
	t.Helper()
	rep, err := checker.New(r, checker.Options{ReadData: true, Percent: 100}).Run(context.Background())
	if err != nil || !rep.OK() {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

func dstSnapshots(t *testing.T, r *repository.Repository) []*snapshot.Snapshot {
	t.Helper()
	l, errs, err := snapshot.List(context.Background(), r)
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	return l
}

func TestCopyAllIsCompleteAndIdempotent(t *testing.T) {
	ctx := context.Background()
	srcBe, dstBe := mem.New(), mem.New()
	src, dst := repotest.New(t, repotest.Backend(srcBe)), repotest.New(t, repotest.Backend(dstBe))
	dir := t.TempDir()
	writeFiles(t, dir, 1, 24, 150_000)
	s1 := backup(t, src, dir)
	writeFiles(t, filepath.Join(dir, "d9"), 2, 4, 150_000) // a few new files
	s2 := backup(t, src, dir)
	pg := postgresSnapshot(t, src, s1)

	c, err := New(src, dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var hooked []string
	hook := func(_ context.Context, d *snapshot.Snapshot) error {
		hooked = append(hooked, d.CopiedFrom)
		return nil
	}
	res, err := c.Run(ctx, nil, true, hook)
	if err != nil {
		t.Fatal(err)
	}
	if len(hooked) != 3 || !slices.Contains(hooked, src.Config().ID+"/"+s2.ID.String()) {
		t.Errorf("hook saw %v", hooked)
	}
	if len(res.Copied) != 3 || len(res.Skipped) != 0 || res.WAL != 3 {
		t.Fatalf("copied %d, skipped %d, wal %d", len(res.Copied), len(res.Skipped), res.WAL)
	}
	// Shared blobs were read once: s2 adds only the new files' blobs.
	total := int64(0)
	src.Index().Each(func(e index.Entry) bool {
		if e.Type == index.DataBlob {
			total++
		}
		return true
	})
	if res.BlobsRead != total {
		t.Errorf("read %d blobs, the source has %d data blobs", res.BlobsRead, total)
	}

	dst = repotest.Open(t, dstBe)
	verify(t, dst)
	byOrigin := make(map[string]*snapshot.Snapshot)
	for _, d := range dstSnapshots(t, dst) {
		byOrigin[d.CopiedFrom] = d
	}
	for _, s := range []*snapshot.Snapshot{s1, s2, pg} {
		d := byOrigin[src.Config().ID+"/"+s.ID.String()]
		if d == nil {
			t.Fatalf("no copy of %s", s.ID.Short())
		}
		if d.Tree == s.Tree {
			t.Error("copied tree keeps the source's id: blob ids were not re-keyed")
		}
		if !d.Time.Equal(s.Time) || d.Hostname != s.Hostname || d.Kind != s.Kind {
			t.Errorf("copy of %s changed its metadata: %+v", s.ID.Short(), d)
		}
		sameContent(t, src, s.Tree, dst, d.Tree)
	}
	if d2 := byOrigin[src.Config().ID+"/"+s2.ID.String()]; d2.Parent == nil || *d2.Parent != byOrigin[src.Config().ID+"/"+s1.ID.String()].ID {
		t.Error("the copy of s2 does not name the copy of s1 as parent")
	}
	checkPostgresCopy(t, src, pg, dst, byOrigin[src.Config().ID+"/"+pg.ID.String()])

	// Again, with a fresh copier: nothing to read, nothing to store.
	c2, _ := New(repotest.Open(t, srcBe), dst, Options{})
	res, err = c2.Run(ctx, nil, true, nil)
	if err != nil || len(res.Copied) != 0 || len(res.Skipped) != 3 || res.BlobsRead != 0 || res.BlobsNew != 0 || res.WAL != 0 {
		t.Errorf("second run: %+v, %v", res, err)
	}
}

// savePGControl stores a stand-in for a base backup's pg_control blob,
// outside any tree, and flushes it.
func savePGControl(t *testing.T, r *repository.Repository) id.ID {
	t.Helper()
	ctx := context.Background()
	ctl, _, err := r.SaveBlob(ctx, index.DataBlob, []byte("pg_control for the test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return ctl
}

// postgresSnapshot adds WAL, a pg_control blob outside the tree, and a
// postgres snapshot reusing base's tree.
func postgresSnapshot(t *testing.T, r *repository.Repository, base *snapshot.Snapshot) *snapshot.Snapshot {
	t.Helper()
	ctx := context.Background()
	ctl := savePGControl(t, r)
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("0000000100000000000000%02X", i)
		if err := r.SaveNamed(ctx, backend.WALFile, name, bytes.Repeat([]byte{byte(i)}, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	sn := *base
	sn.Kind = snapshot.KindPostgres
	sn.Parent = nil
	sn.Extra = json.RawMessage(`{"system_identifier":"7301234567890123456","start_wal":"000000010000000000000001",` +
		`"stop_wal":"000000010000000000000002","pg_control_blob":"` + ctl.String() + `","tablespaces":[{"oid":16400,"location":"/ts"}]}`)
	if err := snapshot.Save(ctx, r, &sn); err != nil {
		t.Fatal(err)
	}
	return &sn
}

func checkPostgresCopy(t *testing.T, src *repository.Repository, s *snapshot.Snapshot, dst *repository.Repository, d *snapshot.Snapshot) {
	t.Helper()
	ctx := context.Background()
	var se, de map[string]any
	json.Unmarshal(s.Extra, &se)
	if err := json.Unmarshal(d.Extra, &de); err != nil {
		t.Fatal(err)
	}
	for k, v := range se {
		if k == pgmeta.PGControlField {
			continue
		}
		if fmt.Sprint(de[k]) != fmt.Sprint(v) {
			t.Errorf("extra %s: %v, copy %v", k, v, de[k])
		}
	}
	sid, _ := id.Parse(se[pgmeta.PGControlField].(string))
	did, err := id.Parse(fmt.Sprint(de[pgmeta.PGControlField]))
	if err != nil || did == sid {
		t.Fatalf("pg_control blob not re-keyed: %v %v", de[pgmeta.PGControlField], err)
	}
	a, err1 := src.LoadBlob(ctx, sid, nil)
	b, err2 := dst.LoadBlob(ctx, did, nil)
	if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
		t.Errorf("pg_control: %v %v, equal %v", err1, err2, bytes.Equal(a, b))
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("0000000100000000000000%02X", i)
		w, err := dst.LoadNamed(ctx, backend.WALFile, name)
		if err != nil || !bytes.Equal(w, bytes.Repeat([]byte{byte(i)}, 1000)) {
			t.Errorf("WAL %s in the copy: %v", name, err)
		}
	}
}

func TestCopyLaterRunReadsOnlyChanges(t *testing.T) {
	ctx := context.Background()
	srcBe, dstBe := mem.New(), mem.New()
	src, dst := repotest.New(t, repotest.Backend(srcBe)), repotest.New(t, repotest.Backend(dstBe))
	dir := t.TempDir()
	writeFiles(t, dir, 3, 40, 100_000)
	backup(t, src, dir)
	c, _ := New(src, dst, Options{})
	first, err := c.Run(ctx, []string{"latest"}, false, nil)
	if err != nil || len(first.Copied) != 1 {
		t.Fatalf("first copy: %+v, %v", first, err)
	}
	// A new backup changing one directory, copied by a new process.
	writeFiles(t, filepath.Join(dir, "d1", "e1"), 4, 2, 100_000)
	s2 := backup(t, src, dir)
	src2, dst2 := repotest.Open(t, srcBe), repotest.Open(t, dstBe)
	c2, _ := New(src2, dst2, Options{})
	res, err := c2.Run(ctx, []string{s2.ID.String()[:10]}, false, nil)
	if err != nil || len(res.Copied) != 1 {
		t.Fatalf("second copy: %+v, %v", res, err)
	}
	if res.BlobsRead == 0 || res.BlobsRead > first.BlobsRead/4 {
		t.Errorf("second copy read %d blobs (first %d): unchanged files were read again", res.BlobsRead, first.BlobsRead)
	}
	d := dstSnapshots(t, dst2)
	sameContent(t, src2, s2.Tree, dst2, d[len(d)-1].Tree)
	verify(t, dst2)
}

// failingBackend fails Save of one object type after it is armed.
type failingBackend struct {
	backend.Backend
	failType backend.FileType
	armed    atomic.Bool
}

var errInjected = errors.New("injected failure")

func (f *failingBackend) Save(ctx context.Context, h backend.Handle, rd io.ReadSeeker, size int64) error {
	if f.armed.Load() && h.Type == f.failType {
		return errInjected
	}
	return f.Backend.Save(ctx, h, rd, size)
}

func TestCopyResumesAfterInterruption(t *testing.T) {
	ctx := context.Background()
	srcBe, memDst := mem.New(), mem.New()
	dstBe := &failingBackend{Backend: memDst, failType: backend.IndexFile}
	src, dst := repotest.New(t, repotest.Backend(srcBe)), repotest.New(t, repotest.Backend(dstBe))
	dir := t.TempDir()
	writeFiles(t, dir, 5, 30, 100_000)
	backup(t, src, dir)
	// The copy dies before any index object is written: its packs remain.
	dstBe.armed.Store(true)
	c, _ := New(src, dst, Options{})
	if _, err := c.Run(ctx, nil, true, nil); !errors.Is(err, errInjected) {
		t.Fatalf("interrupted copy: %v", err)
	}
	packs := 0
	memDst.List(ctx, backend.PackFile, func(backend.FileInfo) error { packs++; return nil })
	if packs == 0 {
		t.Fatal("the interrupted copy left no packs")
	}
	dstBe.armed.Store(false)
	dst2 := repotest.Open(t, dstBe)
	c2, _ := New(repotest.Open(t, srcBe), dst2, Options{})
	res, err := c2.Run(ctx, nil, true, nil)
	if err != nil || len(res.Copied) != 1 {
		t.Fatalf("resumed copy: %+v, %v", res, err)
	}
	if res.BlobsNew != 0 {
		t.Errorf("resumed copy stored %d blobs again: the packs of the interrupted run were not reused", res.BlobsNew)
	}
	verify(t, repotest.Open(t, dstBe))
}

func TestCopyRefusals(t *testing.T) {
	be := mem.New()
	r := repotest.New(t, repotest.Backend(be))
	if _, err := New(r, repotest.Open(t, be), Options{}); err == nil || !strings.Contains(err.Error(), "same repository") {
		t.Errorf("copy into itself: %v", err)
	}
	c, _ := New(r, repotest.New(t), Options{})
	ctx := context.Background()
	if _, err := c.Run(ctx, nil, false, nil); err == nil {
		t.Error("no snapshots and no --all accepted")
	}
	if _, err := c.Run(ctx, []string{"latest"}, true, nil); err == nil {
		t.Error("snapshots and --all accepted")
	}
	if _, err := c.Run(ctx, []string{"abcdef12"}, false, nil); err == nil || !strings.Contains(err.Error(), "no snapshot") {
		t.Errorf("unknown snapshot: %v", err)
	}
}

// TestCopyBackAndAcross: copies run both ways and between three
// repositories. A snapshot the source holds as a copy of one of the
// destination's is not copied back, and one that is a copy of a third
// repository's snapshot the destination holds a copy of too is not
// copied again; each is reported as already there.
func TestCopyBackAndAcross(t *testing.T) {
	ctx := context.Background()
	aBe, bBe, cBe := mem.New(), mem.New(), mem.New()
	a := repotest.New(t, repotest.Backend(aBe))
	b := repotest.New(t, repotest.Backend(bBe))
	c := repotest.New(t, repotest.Backend(cBe))
	dir := t.TempDir()
	writeFiles(t, dir, 1, 4, 100_000)
	backup(t, a, dir)
	run := func(from, to *repository.Repository) *Result {
		t.Helper()
		cp, err := New(from, to, Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := cp.Run(ctx, nil, true, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := run(a, b); len(res.Copied) != 1 {
		t.Fatalf("a to b: %d copied", len(res.Copied))
	}
	if res := run(repotest.Open(t, bBe), repotest.Open(t, aBe)); len(res.Copied) != 0 || len(res.Skipped) != 1 {
		t.Errorf("b back to a: %d copied, %d skipped; want the copy recognised", len(res.Copied), len(res.Skipped))
	}
	if n := len(dstSnapshots(t, repotest.Open(t, aBe))); n != 1 {
		t.Errorf("a has %d snapshots after the copy back, want 1", n)
	}
	if res := run(repotest.Open(t, aBe), c); len(res.Copied) != 1 {
		t.Fatalf("a to c: %d copied", len(res.Copied))
	}
	if res := run(repotest.Open(t, bBe), repotest.Open(t, cBe)); len(res.Copied) != 0 || len(res.Skipped) != 1 {
		t.Errorf("b to c (both hold copies of a's snapshot): %d copied, %d skipped", len(res.Copied), len(res.Skipped))
	}
}

// outageStore answers pack reads, once armed, as a store that does not
// answer does after package retry gave up.
type outageStore struct {
	backend.Backend
	armed atomic.Bool
}

func (o *outageStore) Load(ctx context.Context, h backend.Handle, off, n int64) (io.ReadCloser, error) {
	if o.armed.Load() && h.Type == backend.PackFile {
		return nil, fmt.Errorf("loading %s: %w: giving up after 6 attempts: 503 SlowDown", h, backend.ErrUnavailable)
	}
	return o.Backend.Load(ctx, h, off, n)
}

// A source that does not answer (hostile-s3 M2) stops the copy as a
// failure saying so: no snapshot is reported not copied for lost data,
// and nothing recommends 'forget' on the source.
func TestCopyFromSourceOutageFails(t *testing.T) {
	ctx := context.Background()
	srcBe := &outageStore{Backend: mem.New()}
	src, dst := repotest.New(t, repotest.Backend(srcBe)), repotest.New(t)
	dir := t.TempDir()
	writeFiles(t, dir, 7, 10, 100_000)
	backup(t, src, dir)
	srcBe.armed.Store(true)
	c, err := New(repotest.Open(t, srcBe), dst, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Run(ctx, nil, true, nil)
	var pe *PartialError
	if !errors.Is(err, backend.ErrUnavailable) || errors.As(err, &pe) || strings.Contains(err.Error(), "forget") ||
		!strings.Contains(err.Error(), "nothing is known to be damaged") {
		t.Fatalf("copy from a source that does not answer: %v; want a failure saying nothing is known to be damaged", err)
	}
	if res != nil && len(res.Failed) > 0 {
		t.Errorf("snapshots reported not copied for lost data: %+v", res.Failed)
	}
}
