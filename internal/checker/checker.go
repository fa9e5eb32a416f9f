// Package checker verifies a repository: that every snapshot's trees and
// data blobs are indexed and present (structure), and, when asked, that the
// stored bytes still decrypt and hash to their IDs (read-back). Damage is
// reported by snapshot and file, so an operator knows what is lost.
package checker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// Options choose how deep to check.
type Options struct {
	ReadData bool
	// Percent of packs to read back (0 < p <= 100); 100 reads all.
	Percent float64
	Workers int
}

// Problem is one finding.
type Problem struct {
	Object string `json:"object"` // pack/..., index/..., snapshot/...
	Error  string `json:"error"`
}

// SnapshotReport names what is damaged in one snapshot.
type SnapshotReport struct {
	ID     string   `json:"id"`
	Time   string   `json:"time"`
	Paths  []string `json:"paths"`
	Files  []string `json:"damaged_files"` // paths inside the snapshot
	Errors []string `json:"errors,omitempty"`
}

// Report is the outcome of a check.
type Report struct {
	Snapshots        int              `json:"snapshots"`
	Packs            int              `json:"packs"`
	PacksRead        int              `json:"packs_read"`
	BlobsRead        int64            `json:"blobs_read"`
	BytesRead        int64            `json:"bytes_read"`
	UnindexedPacks   int              `json:"unindexed_packs"`
	Problems         []Problem        `json:"problems"`
	DamagedSnapshots []SnapshotReport `json:"damaged_snapshots"`
}

// OK reports whether nothing was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 && len(r.DamagedSnapshots) == 0 }

// Progress counters for a running check.
type Progress struct {
	PacksDone, BytesRead atomic.Int64
	PacksTotal           atomic.Int64
}

// Checker runs one check.
type Checker struct {
	repo *repository.Repository
	opt  Options
	P    Progress

	mu       sync.Mutex
	report   Report
	badBlobs map[id.ID]string // blob -> why
	memo     map[id.ID][]string
}

// New returns a checker for repo, which must be open with its index loaded.
func New(repo *repository.Repository, opt Options) *Checker {
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.Percent <= 0 || opt.Percent > 100 {
		opt.Percent = 100
	}
	return &Checker{repo: repo, opt: opt, badBlobs: map[id.ID]string{}, memo: map[id.ID][]string{}}
}

func (c *Checker) problem(obj string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Problems = append(c.report.Problems, Problem{Object: obj, Error: err.Error()})
}

func (c *Checker) markBad(b id.ID, why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.badBlobs[b]; !ok {
		c.badBlobs[b] = why
	}
}

// Run checks the repository and returns the report. An error means the
// check itself could not run (e.g. the storage is unreachable).
func (c *Checker) Run(ctx context.Context) (*Report, error) {
	for _, ie := range c.repo.IndexErrors() {
		c.problem("index/"+ie.ID.String(), ie.Err)
	}
	idx := c.repo.Index()

	// Which packs exist, and how large.
	sizes := map[id.ID]int64{}
	err := c.repo.Backend().List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		if pid, err := id.Parse(fi.Name); err == nil {
			sizes[pid] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	byPack := map[id.ID][]index.Entry{}
	idx.Each(func(e index.Entry) bool {
		byPack[e.Pack] = append(byPack[e.Pack], e)
		return true
	})
	c.report.Packs = len(byPack)
	for pid := range sizes {
		if _, ok := byPack[pid]; !ok {
			c.report.UnindexedPacks++
		}
	}
	var toRead []id.ID
	for pid, es := range byPack {
		size, ok := sizes[pid]
		if !ok {
			c.problem("data/"+pid.String(), errors.New("pack is missing"))
			for _, e := range es {
				c.markBad(e.ID, "pack "+pid.Short()+" is missing")
			}
			continue
		}
		var end int64
		for _, e := range es {
			end = max(end, int64(e.Offset)+int64(e.Length))
		}
		if size < end {
			c.problem("data/"+pid.String(), fmt.Errorf("pack is truncated: %d bytes, index needs %d", size, end))
			for _, e := range es {
				if int64(e.Offset)+int64(e.Length) > size {
					c.markBad(e.ID, "pack "+pid.Short()+" is truncated")
				}
			}
		}
		toRead = append(toRead, pid)
	}

	if c.opt.ReadData {
		slices.SortFunc(toRead, func(a, b id.ID) int { return slices.Compare(a[:], b[:]) })
		if c.opt.Percent < 100 {
			rand.Shuffle(len(toRead), func(i, j int) { toRead[i], toRead[j] = toRead[j], toRead[i] })
			n := int(float64(len(toRead))*c.opt.Percent/100 + 0.999)
			toRead = toRead[:min(len(toRead), max(n, 1))]
		}
		c.P.PacksTotal.Store(int64(len(toRead)))
		if err := c.readPacks(ctx, toRead, byPack); err != nil {
			return nil, err
		}
	}

	if err := c.checkSnapshots(ctx); err != nil {
		return nil, err
	}
	return &c.report, nil
}

// readPacks reads packs whole, checks their hash and header, and opens
// every indexed blob in them.
func (c *Checker) readPacks(ctx context.Context, pids []id.ID, byPack map[id.ID][]index.Entry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opt.Workers)
	for _, pid := range pids {
		g.Go(func() error {
			err := c.readPack(gctx, pid, byPack[pid])
			c.P.PacksDone.Add(1)
			return err
		})
	}
	return g.Wait()
}

func (c *Checker) readPack(ctx context.Context, pid id.ID, es []index.Entry) error {
	name := "data/" + pid.String()
	rd, err := c.repo.Backend().Load(ctx, backend.Handle{Type: backend.PackFile, Name: pid.String()}, 0, 0)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.problem(name, err)
		for _, e := range es {
			c.markBad(e.ID, "pack "+pid.Short()+" unreadable")
		}
		return nil
	}
	buf, err := io.ReadAll(rd)
	rd.Close()
	if err != nil {
		c.problem(name, fmt.Errorf("reading: %w", err))
		for _, e := range es {
			c.markBad(e.ID, "pack "+pid.Short()+" unreadable")
		}
		return nil
	}
	c.mu.Lock()
	c.report.PacksRead++
	c.report.BytesRead += int64(len(buf))
	c.mu.Unlock()
	c.P.BytesRead.Add(int64(len(buf)))
	if id.Hash(buf) != pid {
		c.problem(name, errors.New("pack content does not match its name (bytes changed on storage)"))
	}
	var dec []byte
	for _, e := range es {
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(buf)) {
			c.markBad(e.ID, "pack "+pid.Short()+" is truncated")
			continue
		}
		_, err = c.repo.OpenBlob(e, buf[e.Offset:end], &dec)
		c.mu.Lock()
		c.report.BlobsRead++
		c.mu.Unlock()
		if err != nil {
			c.problem(name, err)
			c.markBad(e.ID, err.Error())
		}
	}
	return nil
}

func (c *Checker) checkSnapshots(ctx context.Context) error {
	snaps, errs, err := snapshot.List(ctx, c.repo)
	if err != nil {
		return err
	}
	for _, e := range errs {
		c.problem("snapshots", e)
	}
	c.report.Snapshots = len(snaps)
	for _, sn := range snaps {
		damaged, terrs := c.checkTree(ctx, sn.Tree, "/")
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if len(damaged) == 0 && len(terrs) == 0 {
			continue
		}
		c.report.DamagedSnapshots = append(c.report.DamagedSnapshots, SnapshotReport{
			ID: sn.ID.String(), Time: sn.Time.Format("2006-01-02 15:04:05"), Paths: sn.Paths,
			Files: damaged, Errors: terrs,
		})
	}
	return nil
}

// checkTree returns the damaged file paths below tree tid (mounted at dir)
// and errors for subtrees that cannot be read. Results per tree are
// memoized relative to the tree, since snapshots share most trees.
func (c *Checker) checkTree(ctx context.Context, tid id.ID, dir string) ([]string, []string) {
	rel, errs := c.checkTreeRel(ctx, tid)
	out := make([]string, len(rel))
	for i, r := range rel {
		out[i] = path.Join(dir, r)
	}
	for i, e := range errs {
		errs[i] = fmt.Sprintf("%s: %s", dir, e)
	}
	return out, errs
}

func (c *Checker) checkTreeRel(ctx context.Context, tid id.ID) ([]string, []string) {
	c.mu.Lock()
	if m, ok := c.memo[tid]; ok {
		c.mu.Unlock()
		return m, nil
	}
	why, bad := c.badBlobs[tid]
	c.mu.Unlock()
	if bad {
		return []string{"."}, []string{"directory listing lost: " + why}
	}
	t, err := tree.Load(ctx, c.repo, tid)
	if err != nil {
		return []string{"."}, []string{"directory listing lost: " + err.Error()}
	}
	var damaged, errs []string
	idx := c.repo.Index()
	for _, n := range t.Nodes {
		switch n.Type {
		case tree.Dir:
			d, e := c.checkTreeRel(ctx, *n.Subtree)
			for _, p := range d {
				damaged = append(damaged, path.Join(n.Name, p))
			}
			for _, x := range e {
				errs = append(errs, n.Name+": "+x)
			}
		case tree.File:
			for _, b := range n.Content {
				c.mu.Lock()
				_, isBad := c.badBlobs[b]
				c.mu.Unlock()
				if isBad || !idx.Has(b) {
					damaged = append(damaged, n.Name)
					break
				}
			}
		}
	}
	if len(errs) == 0 {
		c.mu.Lock()
		c.memo[tid] = damaged
		c.mu.Unlock()
	}
	return damaged, errs
}
