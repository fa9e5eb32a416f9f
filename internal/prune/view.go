package prune

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nestguard/nestguard/internal/backend"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
)

// metaReads bounds the index objects and pack headers a prune reads at
// once, as repository.DefaultMetadataReads does for the engine.
const metaReads = repository.DefaultMetadataReads

// packInfo is what prune knows of one stored pack.
type packInfo struct {
	size    int64
	mtime   time.Time
	indexed bool      // listed by a readable index object
	blobs   []blobRef // from the index objects, or the header of an unindexed candidate
	record  bool      // named by a candidate record
}

// blobRef is one blob of a pack, without the pack's ID: 48 bytes where an
// index.Entry takes 80, and a prune holds one for every blob.
type blobRef struct {
	id                        id.ID
	offset, length, rawLength uint32
	typ                       index.BlobType
}

func (b blobRef) entry(pack id.ID) index.Entry {
	return index.Entry{ID: b.id, Type: b.typ, Pack: pack, Offset: b.offset, Length: b.length, RawLength: b.rawLength}
}

func refOf(e index.Entry) blobRef {
	return blobRef{id: e.ID, offset: e.Offset, length: e.Length, rawLength: e.RawLength, typ: e.Type}
}

// indexObject is what prune keeps of one index object: its packs and
// their blobs.
type indexObject struct {
	packs []id.ID
	blobs [][]blobRef
}

func compact(f *index.File) *indexObject {
	o := &indexObject{packs: make([]id.ID, len(f.Packs)), blobs: make([][]blobRef, len(f.Packs))}
	for i, p := range f.Packs {
		o.packs[i] = p.Pack
		o.blobs[i] = make([]blobRef, len(p.Blobs))
		for j, e := range p.Blobs {
			o.blobs[i][j] = refOf(e)
		}
	}
	return o
}

// view is the repository as one prune step sees it: every stored pack,
// and every readable index object with the packs it lists, read fresh
// from storage (the in-memory index of the repository only grows, and may
// name packs that are gone).
type view struct {
	packs      map[id.ID]*packInfo
	indexPacks map[id.ID][]id.ID // index object -> packs it lists
	indexOf    map[id.ID][]id.ID // pack -> index objects listing it
	damaged    []string          // index objects that cannot be read
	// missing are the packs a readable index object lists that are not
	// stored, with their blobs.
	missing map[id.ID][]blobRef
}

// load lists the packs and reads every index object. recorded are the
// packs candidate records name; the headers of those that no index lists
// are read too, so their blobs count (a prune killed after replacing the
// index objects and before deleting the packs leaves such packs).
//
// Index objects never change, so those read by an earlier load of the
// same run (in read) are taken from there, and the ones read now are
// added to it.
func load(ctx context.Context, repo *repository.Repository, recorded map[id.ID]struct{}, read map[id.ID]*indexObject, rep *Report) (*view, error) {
	v := &view{packs: make(map[id.ID]*packInfo), indexPacks: make(map[id.ID][]id.ID), indexOf: make(map[id.ID][]id.ID), missing: make(map[id.ID][]blobRef)}
	be := repo.Backend()
	err := be.List(ctx, backend.PackFile, func(fi backend.FileInfo) error {
		pid, err := id.Parse(fi.Name)
		if err != nil {
			return nil // not nestguard's
		}
		_, rec := recorded[pid]
		v.packs[pid] = &packInfo{size: fi.Size, mtime: fi.ModTime, record: rec}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing packs: %w", err)
	}
	if err := v.readIndex(ctx, repo, read); err != nil {
		return nil, err
	}
	var unlisted int
	var headers []id.ID
	for pid, pi := range v.packs {
		switch {
		case pi.indexed:
		case pi.record:
			headers = append(headers, pid)
		default:
			unlisted++
		}
	}
	if len(v.damaged) > 0 && unlisted > 0 {
		return nil, fmt.Errorf("refusing to prune: index objects cannot be read (%s) and %d packs are listed by no readable index object: their blobs would look unused; run 'nestguard repair index' first",
			strings.Join(v.damaged, ", "), unlisted)
	}
	return v, v.readHeaders(ctx, repo, headers, rep)
}

// readIndex reads every index object. One that is damaged is noted (see
// load); any other failure stops the prune.
func (v *view) readIndex(ctx context.Context, repo *repository.Repository, read map[id.ID]*indexObject) error {
	ids, err := repo.ListObjects(ctx, backend.IndexFile)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(metaReads)
	for _, iid := range ids {
		g.Go(func() error {
			mu.Lock()
			o := read[iid]
			mu.Unlock()
			var err error
			if o == nil {
				var f *index.File
				if f, err = repo.ReadIndexObject(gctx, iid); err == nil {
					o = compact(f)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil // replaced since listed
			case errors.Is(err, repository.ErrObjectCorrupted):
				v.damaged = append(v.damaged, "index/"+iid.String())
				return nil
			case err != nil:
				return fmt.Errorf("reading index/%s: %w", iid, err)
			}
			read[iid] = o
			for i, pack := range o.packs {
				v.indexOf[pack] = append(v.indexOf[pack], iid)
				pi := v.packs[pack]
				if pi == nil {
					v.missing[pack] = o.blobs[i] // verify reports it
					continue
				}
				if pi.indexed {
					continue // listed twice
				}
				pi.indexed = true
				pi.blobs = o.blobs[i]
			}
			v.indexPacks[iid] = o.packs
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	slices.Sort(v.damaged)
	return nil
}

// readHeaders reads the blobs of unindexed candidate packs from their
// headers. A pack whose header is damaged holds nothing readable: it
// stays without blobs, with a warning.
func (v *view) readHeaders(ctx context.Context, repo *repository.Repository, pids []id.ID, rep *Report) error {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(metaReads)
	for _, pid := range pids {
		g.Go(func() error {
			blobs, _, err := repo.PackHeader(gctx, pid)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, fs.ErrNotExist):
				delete(v.packs, pid)
				return nil
			case errors.Is(err, repository.ErrObjectCorrupted):
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("data/%s: a deletion candidate no index lists, with a damaged header: %v", pid, err))
				return nil
			case err != nil:
				return fmt.Errorf("reading the header of pack %s: %w", pid.Short(), err)
			}
			refs := make([]blobRef, len(blobs))
			for i, b := range blobs {
				refs[i] = blobRef{id: b.ID, typ: index.BlobType(b.Type), offset: b.Offset, length: b.Length, rawLength: b.RawLength}
			}
			v.packs[pid].blobs = refs
			return nil
		})
	}
	return g.Wait()
}

// total returns the number and bytes of the stored packs.
func (v *view) total() Count {
	var c Count
	for _, pi := range v.packs {
		c.add(pi.size)
	}
	return c
}

// sortedPacks returns the IDs of set, sorted, so that runs are
// reproducible.
func sortedPacks[V any](set map[id.ID]V) []id.ID {
	out := make([]id.ID, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b id.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
	return out
}
