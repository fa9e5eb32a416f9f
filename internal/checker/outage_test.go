package checker

import (
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/backend/mem"
	"github.com/nestguard/nestguard/internal/backend/retry"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/repository/repotest"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// slowDown is what a throttling store answers (S3's 503 SlowDown): an
// error that may pass.
type slowDown struct{}

func (slowDown) Error() string   { return "503 SlowDown: please reduce your request rate" }
func (slowDown) Transient() bool { return true }

// outage is a store that answers every read of the packs in down (of
// every pack, with all) with slowDown.
type outage struct {
	backend.Backend
	mu   sync.Mutex
	all  bool
	down map[string]bool
}

func (o *outage) Load(ctx context.Context, h backend.Handle, off, n int64) (io.ReadCloser, error) {
	o.mu.Lock()
	fail := h.Type == backend.PackFile && (o.all || o.down[h.Name])
	o.mu.Unlock()
	if fail {
		return nil, slowDown{}
	}
	return o.Backend.Load(ctx, h, off, n)
}

// outageRepo returns a repository behind package retry (as S3 is) on an
// outage store, with one snapshot of files in several packs, its trees
// in a pack of their own.
func outageRepo(t *testing.T) (*repository.Repository, *outage, *snapshot.Snapshot, []id.ID) {
	t.Helper()
	ctx := context.Background()
	o := &outage{Backend: mem.New(), down: map[string]bool{}}
	be := retry.New(o, retry.Options{Attempts: 2, Base: time.Millisecond, Max: time.Millisecond})
	repo := repotest.New(t, repotest.Backend(be))
	rng := rand.New(rand.NewPCG(5, 5))
	var nodes []*tree.Node
	for i := range 8 {
		b := make([]byte, 300_000)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		bid, _, err := repo.SaveBlob(ctx, index.DataBlob, b)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, &tree.Node{Name: "f" + string(rune('a'+i)), Type: tree.File, Size: uint64(len(b)), Content: []id.ID{bid}})
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	dataPacks := repo.Index().Packs()
	sub := repotest.SaveTree(t, repo, nodes...)
	sn := &snapshot.Snapshot{Time: time.Unix(1, 0), Kind: snapshot.KindFiles, Tree: repotest.SaveTree(t, repo, repotest.Dir("d", sub))}
	if err := snapshot.Save(ctx, repo, sn); err != nil {
		t.Fatal(err)
	}
	if err := repo.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(dataPacks) < 2 {
		t.Fatalf("%d data packs, want several", len(dataPacks))
	}
	return repo, o, sn, dataPacks
}

// TestOutageIsNotDamage: a store that answers pack reads only with
// throttling until the retries give up (hostile-s3 M2) makes verify
// report those packs not read and the snapshot not fully checked, never
// a damaged pack, a lost directory or a damaged snapshot; with or
// without --read-data, whether the trees or only the data are out of
// reach.
func TestOutageIsNotDamage(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		readData bool
		all      bool // every pack, trees included; else the data packs
	}{
		{"structure, every pack", false, true},
		{"read-data, every pack", true, true},
		{"read-data, data packs", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo, o, sn, dataPacks := outageRepo(t)
			o.mu.Lock()
			o.all = tc.all
			for _, p := range dataPacks {
				o.down[p.String()] = true
			}
			o.mu.Unlock()
			r := repotest.Open(t, repo.Backend())
			rep, err := New(r, Options{ReadData: tc.readData, Percent: 100}).Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) > 0 || len(rep.DamagedSnapshots) > 0 || len(rep.Warnings) > 0 {
				t.Errorf("an outage reported as damage: problems %+v, warnings %+v, damaged snapshots %+v", rep.Problems, rep.Warnings, rep.DamagedSnapshots)
			}
			if rep.OK() || !rep.Intact() {
				t.Errorf("OK %v, Intact %v; want false, true", rep.OK(), rep.Intact())
			}
			if len(rep.Unread) == 0 {
				t.Fatalf("nothing reported not read")
			}
			for _, u := range rep.Unread {
				if !strings.HasPrefix(u.Object, "data/") || !strings.Contains(u.Error, "SlowDown") || !strings.Contains(u.Error, "giving up after 2 attempts") {
					t.Errorf("not read: %+v", u)
				}
			}
			if !slices.Equal(rep.UncheckedSnapshots, []string{sn.ID.String()}) {
				t.Errorf("unchecked snapshots %v, want %s", rep.UncheckedSnapshots, sn.ID.Short())
			}
			if tc.readData && rep.PacksRead != 0 && tc.all {
				t.Errorf("%d packs read from a store that answered none", rep.PacksRead)
			}

			// The store answers again: the same check is clean.
			o.mu.Lock()
			o.all, o.down = false, map[string]bool{}
			o.mu.Unlock()
			rep, err = New(repotest.Open(t, repo.Backend()), Options{ReadData: tc.readData, Percent: 100}).Run(ctx)
			if err != nil || !rep.OK() {
				t.Fatalf("after the outage: %v, %+v", err, rep)
			}
		})
	}
}

// TestDamageBesideOutage: a pack that is damaged is reported damaged
// while another the store does not answer for is reported not read.
func TestDamageBesideOutage(t *testing.T) {
	ctx := context.Background()
	repo, o, sn, dataPacks := outageRepo(t)
	mb := repo.Backend().(interface{ Unwrap() backend.Backend }).Unwrap().(*outage).Backend
	damagePack(t, mb, dataPacks[0])
	o.mu.Lock()
	o.down[dataPacks[1].String()] = true
	o.mu.Unlock()
	rep, err := New(repotest.Open(t, repo.Backend()), Options{ReadData: true, Percent: 100}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Intact() || len(rep.DamagedSnapshots) != 1 || rep.DamagedSnapshots[0].ID != sn.ID.String() {
		t.Errorf("damaged pack: damaged snapshots %+v, problems %+v", rep.DamagedSnapshots, rep.Problems)
	}
	if !slices.ContainsFunc(rep.Problems, func(p Problem) bool { return p.Object == "data/"+dataPacks[0].String() }) ||
		slices.ContainsFunc(rep.Problems, func(p Problem) bool { return p.Object == "data/"+dataPacks[1].String() }) {
		t.Errorf("problems %+v: want the damaged pack only", rep.Problems)
	}
	if len(rep.Unread) != 1 || rep.Unread[0].Object != "data/"+dataPacks[1].String() {
		t.Errorf("not read %+v, want the pack the store did not answer for", rep.Unread)
	}
	if len(rep.UncheckedSnapshots) != 0 {
		t.Errorf("unchecked %v: a snapshot reported damaged is not also unchecked", rep.UncheckedSnapshots)
	}
}

// eioStore fails every pack read with EIO, as a local disk that cannot
// read a sector does.
type eioStore struct{ backend.Backend }

func (e eioStore) Load(ctx context.Context, h backend.Handle, off, n int64) (io.ReadCloser, error) {
	if h.Type == backend.PackFile {
		return nil, &fs.PathError{Op: "read", Path: "data/" + h.Name, Err: syscall.EIO}
	}
	return e.Backend.Load(ctx, h, off, n)
}

// TestLocalReadErrorIsDamage: a local directory is not retried, and its
// read error (EIO) is damage, as documented in verify --help: waiting
// does not bring back what the disk lost. Only the storage not answering
// (backend.ErrUnavailable) is "not read".
func TestLocalReadErrorIsDamage(t *testing.T) {
	ctx := context.Background()
	repo, _, sn, _ := outageRepo(t)
	mb := repo.Backend().(interface{ Unwrap() backend.Backend }).Unwrap().(*outage).Backend
	rep, err := New(repotest.Open(t, eioStore{mb}), Options{ReadData: true, Percent: 100}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Unread) != 0 || len(rep.DamagedSnapshots) != 1 || rep.DamagedSnapshots[0].ID != sn.ID.String() {
		t.Errorf("EIO: not read %+v, damaged snapshots %+v; want damage", rep.Unread, rep.DamagedSnapshots)
	}
}
