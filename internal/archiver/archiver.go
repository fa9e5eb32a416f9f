// Package archiver backs up files into a repository.
//
// The pipeline keeps every core busy without reading any file twice:
//
//	walker ──files──▶ readers (chunk) ──chunks──▶ workers (hash, compress, seal, pack)
//	   └── one goroutine per directory waits for its entries, then saves its tree
//
// Small fixed-size chunks go to the workers in runs of up to 1 MiB, and a
// file that is one run (a small file) is saved by its reader (split).
//
// The walker compares each entry with the parent snapshot and reuses the
// content of unchanged files (same size, mtime, ctime and inode) without
// opening them. Memory is bounded by a fixed pool of chunk buffers: a reader
// waits for a free buffer, so one huge file streams through all workers.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nestguard/nestguard/internal/chunker"
	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/id"
	"github.com/nestguard/nestguard/internal/index"
	"github.com/nestguard/nestguard/internal/repository"
	"github.com/nestguard/nestguard/internal/snapshot"
	"github.com/nestguard/nestguard/internal/tree"
)

// Repo is what the archiver needs of a repository.
type Repo interface {
	tree.BlobStore
	// Reusable reports whether a blob may be referenced without storing
	// it: it is stored outside the packs prune marked for deletion
	// (repository.Repository.Reusable). The parent's shortcuts (an
	// unchanged file's content, an equal tree) are taken only for
	// reusable blobs.
	Reusable(bid id.ID) bool
	// BlobID is the ID SaveBlob gives data (repository.Repository.BlobID).
	BlobID(data []byte) id.ID
	// SaveBlobFrom stores buf[1:] as blob bid (its BlobID) with a byte of
	// room before it, which a raw blob is sealed out of without a copy
	// (repository.Repository.SaveBlobFrom).
	SaveBlobFrom(ctx context.Context, t index.BlobType, bid id.ID, buf []byte) (bool, error)
}

// CheckExcludes returns an error naming the first pattern of ps that is
// not a valid glob (filepath.Match): one that never matches, silently,
// would back up what the user meant to leave out (found by a hostile
// test: --exclude '[' was ignored).
func CheckExcludes(ps []string) error {
	for _, p := range ps {
		if _, err := filepath.Match(p, ""); err != nil {
			return fmt.Errorf("exclude pattern %q: %w (see filepath.Match: * ? [class] and \\ escapes; a literal [ is \\[)", p, err)
		}
	}
	return nil
}

// Options configure a backup.
type Options struct {
	// Excludes are glob patterns (filepath.Match) tested against each
	// entry's base name and its absolute path.
	Excludes []string
	// Exclude, if set, is asked about every entry with its path relative
	// to the directory given to SnapshotDir (or its absolute path).
	Exclude func(path string, fi fs.FileInfo) bool
	// OneFileSystem stays on the file system of each backed-up path: a
	// directory on another is saved empty (a mount point), as tar
	// --one-file-system and rsync -x keep it.
	OneFileSystem bool
	// Follow names paths given to Snapshot that are followed where they
	// are a symbolic link (given with a trailing slash, as tar, rsync and
	// cp -r follow "link/"): saved under their name as the directory the
	// link leads to.
	Follow []string
	// Mounts are further directories SnapshotDir backs up into its tree,
	// each in place of the entry (if any) at its Path: a PostgreSQL
	// tablespace in place of its symlink in pg_tblspc.
	Mounts []Mount
	// Parent is the root tree of the snapshot to compare with, if any.
	Parent *id.ID
	// RereadSince, if set, makes a file with content whose mtime in the
	// parent is not before it count as changed, however unchanged it
	// looks: a write within the timestamp tick of the mtime the parent
	// read leaves that mtime as it was. Set it shortly before the
	// parent's copy began; files are then read again only when they were
	// modified around or after it.
	RereadSince time.Time
	// Chunker sizes and the key-derived seed.
	Chunker chunker.Params
	Seed    [32]byte
	// Splitter, if set, chooses the chunker for a file (relative path as
	// for Exclude); returning nil falls back to content-defined chunking.
	Splitter func(path string, rd io.Reader) chunker.Splitter
	// OnChunk, if set, sees every chunk read from a file in order (used to
	// verify PostgreSQL page checksums while reading).
	OnChunk func(path string, offset int64, data []byte)
	// ExpectWrites says that files are written while they are read by
	// design, and that a copy that mixes states is repaired later: a
	// PostgreSQL base backup, whose relation files WAL replay makes
	// consistent. A file's status is then not compared before and after
	// its read (Archiver.Changed stays empty), and a file that grew or
	// shrank meanwhile is only logged.
	ExpectWrites bool
	// Workers hash, compress and seal chunks (default
	// repository.Workers(): one per CPU, at least 2); Readers read files
	// (default DefaultReaders), and save a file of one run themselves, so
	// up to Workers+Readers chunks are saved at once.
	Workers, Readers int
	Log              *slog.Logger
}

// Mount is a directory backed up as the subtree at Path (slash-separated
// and relative to the directory given to SnapshotDir, as Exclude sees
// paths; below it, entries are named Path/...). Its parent directory must
// be part of the backup. Dir is read with its symlinks resolved; the
// mount's own node describes that directory, and Exclude is not asked
// about it.
type Mount struct {
	Path string
	Dir  string
}

// FileError records an entry that could not be backed up.
type FileError = tree.PathError

// Counters are updated while a backup runs; read them for progress.
type Counters struct {
	Files, Dirs, FilesNew, FilesChanged, FilesUnmodified atomic.Int64
	BytesTotal, BytesRead, Errors                        atomic.Int64
	// ChangedWhileRead counts the files written while they were read
	// (Archiver.Changed).
	ChangedWhileRead atomic.Int64
}

// Archiver runs one backup.
type Archiver struct {
	repo Repo
	opt  Options
	log  *slog.Logger

	C Counters

	cancel context.CancelCauseFunc
	named  map[string]bool // the paths given to Snapshot
	// noXattrat: the kernel lacks the *xattrat calls (dirHandle).
	noXattrat atomic.Bool
	walkers   chan struct{}  // a token per directory being listed concurrently
	walking   sync.WaitGroup // walker goroutines, which send to files
	files     chan *fileJob
	chunks    chan *chunkJob
	bufs      chan []byte
	bigBufs   atomic.Int64 // large heap buffers in bufs; see putBuf
	// chunkMem holds the mapped chunk buffers of a run, freed at its end.
	chunkMem []*hugemem.Buffer

	errMu   sync.Mutex
	errs    []FileError
	changed []FileError // see Changed

	ids idNames

	mounts  map[string][]Mount // by the path of their parent directory ("" for the root)
	mountMu sync.Mutex
	mounted map[string]bool // mounts backed up, by Path

	zeroMu  sync.Mutex
	zeroIDs map[int]id.ID // by size; see zeroChunk

	// Files of directMin bytes or more are read past the page cache
	// (direct.go), in buffers from directBufs.
	directMin  int64
	directBufs hugemem.Pool

	// beforeOpen, if set, is called with a file's path before it is
	// opened to be read (tests change the file there).
	beforeOpen func(abs string)
}

// DefaultReaders is how many files an archiver reads at once: enough to
// keep a disk's queue busy and hide the latency of opening small files.
// On the AMD EPYC machine, 150,000 files of 100-400 bytes backed up cold
// took 12% less time with 8 than with 4, in 9 pairs of 9, for the same
// CPU and 8 MiB more memory; 16 did no better (docs/benchmarks.md, stop
// 40).
const DefaultReaders = 8

// New returns an archiver that writes to repo.
func New(repo Repo, opt Options) *Archiver {
	if opt.Workers <= 0 {
		opt.Workers = repository.Workers()
	}
	if opt.Readers <= 0 {
		opt.Readers = DefaultReaders
	}
	if opt.Chunker == (chunker.Params{}) {
		opt.Chunker = chunker.DefaultParams()
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Archiver{repo: repo, opt: opt, log: log, ids: idNames{users: map[uint32]string{}, groups: map[uint32]string{}, log: log},
		zeroIDs: map[int]id.ID{}, directMin: directMin,
		directBufs: hugemem.Pool{Keep: 2 * opt.Readers}} // two per reader (newDirectReader)
}

// Errors lists the entries that could not be backed up.
func (a *Archiver) Errors() []FileError {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return append([]FileError(nil), a.errs...)
}

// Changed lists the files whose size, mtime or ctime differed after
// their read from before it (unless Options.ExpectWrites): each is in the
// snapshot, but its content may mix the states it went through while it
// was read, so the backup is not a consistent copy of it.
func (a *Archiver) Changed() []FileError {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	return append([]FileError(nil), a.changed...)
}

func (a *Archiver) fileError(path string, err error) {
	a.recordError(path, err, "cannot back up")
}

// recordError counts and lists err for path, logging it with msg.
func (a *Archiver) recordError(path string, err error, msg string) {
	a.C.Errors.Add(1)
	a.log.Warn(msg, "path", path, "err", err)
	a.errMu.Lock()
	a.errs = append(a.errs, FileError{Path: path, Err: err.Error()})
	a.errMu.Unlock()
}

// Snapshot backs up paths (files or directories, made absolute) and
// returns the root tree. The root mirrors the absolute paths: backing up
// /srv/a stores the directories srv and srv/a.
func (a *Archiver) Snapshot(ctx context.Context, paths []string) (id.ID, error) {
	if len(a.opt.Mounts) > 0 {
		return id.ID{}, errors.New("mounts apply to SnapshotDir only")
	}
	root, err := buildTargets(paths, a.opt.Follow)
	if err != nil {
		return id.ID{}, err
	}
	a.named = make(map[string]bool, len(paths))
	for _, p := range paths {
		a.named[filepath.Clean(p)] = true
	}
	var rootTree id.ID
	err = a.run(ctx, func(ctx context.Context) error {
		parent := a.loadTree(ctx, a.opt.Parent)
		f := a.saveVirtual(ctx, "/", root, parent)
		if err := f.wait(ctx); err != nil {
			return err
		}
		rootTree = *f.node.Subtree
		return nil
	})
	return rootTree, err
}

// SnapshotDir backs up the contents of dir so that they form the root of
// the snapshot tree, with the directories of Options.Mounts in it (used
// for PostgreSQL data directories and their tablespaces).
func (a *Archiver) SnapshotDir(ctx context.Context, dir string) (id.ID, error) {
	if err := a.setMounts(); err != nil {
		return id.ID{}, err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return id.ID{}, fmt.Errorf("backup source: %w", err)
	}
	if !fi.IsDir() {
		return id.ID{}, fmt.Errorf("backup source %s is not a directory", dir)
	}
	var rootTree id.ID
	err = a.run(ctx, func(ctx context.Context) error {
		parent := a.loadTree(ctx, a.opt.Parent)
		n, err := a.node(dir, fi)
		if err != nil {
			return err
		}
		f := a.saveDir(ctx, nil, "", dir, "", n, parent, deviceOf(fi))
		if err := f.wait(ctx); err != nil {
			return err
		}
		if err := a.checkMounted(); err != nil {
			return err
		}
		rootTree = *f.node.Subtree
		return nil
	})
	return rootTree, err
}

// run starts the readers and workers, calls walk, and shuts them down.
func (a *Archiver) run(ctx context.Context, walk func(context.Context) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	a.cancel = cancel
	a.walkers = make(chan struct{}, walkers)
	a.files = make(chan *fileJob, 64)
	a.chunks = make(chan *chunkJob, a.opt.Workers)
	// One buffer per worker keeps them busy; one per reader lets each read
	// ahead. More only adds memory: each grows to the largest chunk it held.
	// Where it can, each is mapped at once as large as the largest chunk,
	// outside the heap and in huge pages (hugemem): heap buffers, grown
	// and dropped as chunk sizes varied (see putBuf) and given back to the
	// system by the collector, cost a page fault per 4 KiB written, 16
	// thousand of them backing up a 1.4 GB PostgreSQL data directory (14-22
	// µs each on the virtual machines measured). Only the pages used are
	// resident.
	nbufs := a.opt.Workers + a.opt.Readers
	a.bufs = make(chan []byte, nbufs)
	a.chunkMem = a.chunkMem[:0]
	for range nbufs {
		b, ok := hugemem.Map(a.opt.Chunker.Max)
		if !ok {
			a.bufs <- nil
			continue
		}
		a.chunkMem = append(a.chunkMem, b)
		a.bufs <- b.Bytes()[:0]
	}
	var readers, workers sync.WaitGroup
	for range a.opt.Readers {
		readers.Go(func() {
			for j := range a.files {
				a.readFile(ctx, j)
			}
		})
	}
	for range a.opt.Workers {
		workers.Go(func() {
			for j := range a.chunks {
				a.saveChunk(ctx, j)
			}
		})
	}
	err := walk(ctx)
	// walk returns early on an error or cancellation, when walkers may
	// still be listing and sending files: files is closed after them.
	a.walking.Wait()
	close(a.files)
	readers.Wait()
	close(a.chunks)
	workers.Wait()
	a.directBufs.Release() // every reader closed its file
	for _, b := range a.chunkMem {
		b.Free() // every chunk was saved or dropped
	}
	a.chunkMem = a.chunkMem[:0]
	if cause := context.Cause(ctx); cause != nil && err == nil {
		err = cause
	}
	if err != nil && errors.Is(err, context.Canceled) && context.Cause(ctx) != nil {
		err = context.Cause(ctx)
	}
	return err
}

func (a *Archiver) fatal(err error) { a.cancel(err) }

// walkers bounds the directories listed at once besides the caller's: the
// waits are on the disk, not the CPU, so more than the cores.
const walkers = 8

// loadTree loads a parent tree; failures only cost speed, so they are logged.
func (a *Archiver) loadTree(ctx context.Context, tid *id.ID) *tree.Tree {
	if tid == nil {
		return nil
	}
	t, err := tree.Load(ctx, a.repo, *tid)
	if err != nil {
		a.log.Warn("parent tree unreadable; reading files again", "tree", tid.String(), "err", err)
		return nil
	}
	return t
}

// future is the result of saving one entry: its node once done.
type future struct {
	done chan struct{}
	node *tree.Node
	err  error // the entry is dropped (file errors) or the backup fails (ctx)
}

func doneFuture(n *tree.Node) *future {
	f := &future{done: make(chan struct{}), node: n}
	close(f.done)
	return f
}

func (f *future) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// target is a node of the tree of paths given to Snapshot.
type target struct {
	selected bool // back up everything below
	follow   bool // selected, and followed if a symbolic link (Options.Follow)
	children map[string]*target
}

func buildTargets(paths, follow []string) (*target, error) {
	if len(paths) == 0 {
		return nil, errors.New("no paths to back up")
	}
	// A path below another given path that is a symbolic link saved as
	// the link cannot be saved through it (found by a hostile test:
	// 'backup lnk lnk/b' saved only the link, exit 0).
	for _, p := range paths {
		if slices.Contains(follow, p) {
			continue
		}
		for _, q := range paths {
			if strings.HasPrefix(q, p+"/") {
				if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
					return nil, fmt.Errorf("backup path %s is below %s, a symbolic link, which is saved as the link: give %s/ to back up the directory it leads to, or %s alone", q, p, p, q)
				}
			}
		}
	}
	root := &target{children: map[string]*target{}}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("backup path %q: %w", p, err)
		}
		if _, err := os.Lstat(abs); err != nil {
			return nil, fmt.Errorf("backup path: %w", err)
		}
		t := root
		if abs == "/" {
			root.selected = true
			continue
		}
		for _, c := range strings.Split(strings.TrimPrefix(abs, "/"), "/") {
			if t.selected {
				break
			}
			n := t.children[c]
			if n == nil {
				n = &target{children: map[string]*target{}}
				t.children[c] = n
			}
			t = n
		}
		t.selected, t.children = true, nil
		t.follow = t.follow || slices.Contains(follow, abs)
	}
	return root, nil
}

// renamedInfo is a file's information under another name: a directory
// reached through a symbolic link, saved under the link's name.
type renamedInfo struct {
	fs.FileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }

// statFollowed returns the information of the file p leads to, through
// every symbolic link, under p's name, and the path it resolves to.
func statFollowed(p string) (fs.FileInfo, string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, "", err
	}
	fi, err := os.Lstat(real)
	if err != nil {
		return nil, "", err
	}
	return renamedInfo{fi, filepath.Base(p)}, real, nil
}

// saveVirtual saves the ancestors of the selected paths: directories that
// hold only the selected entries. An ancestor that is a symbolic link to
// a directory (/lib to usr/lib) is saved as that directory, under the
// link's name: saved as the link, it left what was selected below it out
// of the snapshot, while the backup counted it and every check passed
// (found by a hostile test).
func (a *Archiver) saveVirtual(ctx context.Context, dir string, t *target, parent *tree.Tree) *future {
	// Every failure is recorded: the parent's finishDir leaves the entry
	// out as one already reported, and the siblings go on (found by a
	// hostile test: one path that failed dropped the others, exit 0).
	fail := func(err error) *future {
		err = fmt.Errorf("backup path: %w", err)
		a.fileError(dir, err)
		return &future{done: closed(), err: err}
	}
	fi, real, err := statFollowed(dir)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return fail(fmt.Errorf("%s is not a directory (it leads to %s)", dir, real))
	}
	n, err := a.node(real, fi)
	if err != nil {
		return fail(err)
	}
	if dir == "/" {
		n.Name = "/"
	}
	if t.selected {
		return a.saveDir(ctx, nil, "", dir, dir, n, parent, deviceOf(fi))
	}
	names := make([]string, 0, len(t.children))
	for c := range t.children {
		names = append(names, c)
	}
	sort.Strings(names)
	var kids []*future
	for _, c := range names {
		p := filepath.Join(dir, c)
		child := t.children[c]
		pn := findNode(parent, c)
		if child.selected {
			cfi, err := os.Lstat(p)
			if err == nil && child.follow && cfi.Mode()&fs.ModeSymlink != 0 {
				cfi, _, err = statFollowed(p)
			}
			if err != nil {
				a.fileError(p, fmt.Errorf("backup path: %w", err))
				continue
			}
			kids = append(kids, a.saveEntry(ctx, nil, p, p, cfi, pn, deviceOf(cfi)))
			continue
		}
		kids = append(kids, a.saveVirtual(ctx, p, child, a.subtree(ctx, pn)))
	}
	return a.finishDir(ctx, dir, n, kids, parent)
}

func closed() chan struct{} { c := make(chan struct{}); close(c); return c }

func findNode(t *tree.Tree, name string) *tree.Node {
	if t == nil {
		return nil
	}
	return t.Find(name)
}

func (a *Archiver) subtree(ctx context.Context, n *tree.Node) *tree.Tree {
	if n == nil || n.Type != tree.Dir {
		return nil
	}
	return a.loadTree(ctx, n.Subtree)
}

func (a *Archiver) excluded(abs, rel string, fi fs.FileInfo) bool {
	base := filepath.Base(abs)
	for _, p := range a.opt.Excludes {
		if ok, _ := filepath.Match(p, base); ok {
			return true
		}
		if ok, _ := filepath.Match(p, abs); ok {
			return true
		}
	}
	return a.opt.Exclude != nil && a.opt.Exclude(rel, fi)
}

// saveDir walks directory abs (rel is its path as given to Exclude) and
// returns a future for its node, completed once its tree is saved.
//
// It opens the directory as entry name of dir (which it unrefs), or, with
// dir nil, by its path abs (a path given to the backup); its entries are
// opened relative to it (dirHandle).
func (a *Archiver) saveDir(ctx context.Context, dir *dirHandle, name, abs, rel string, n *tree.Node, parent *tree.Tree, dev uint64) *future {
	a.C.Dirs.Add(1)
	d, err := openDir(dir, name, abs)
	dir.unref()
	if err != nil && errors.Is(err, fs.ErrNotExist) {
		// Deleted since it was listed: left out and reported, as a
		// file deleted before its open is (found by a hostile test:
		// saved as an empty directory, a state it never had).
		a.C.Dirs.Add(-1)
		err = fmt.Errorf("deleted during the backup: %w", err)
		a.fileError(abs, err)
		return &future{done: closed(), err: err}
	}
	var entries []dirEntry
	if err == nil {
		defer d.unref()
		d.noAt = &a.noXattrat
		a.openedDir(d, abs, n)
		entries, err = readDir(d, abs)
	}
	if err != nil {
		// Keep the directory itself with what could be read.
		a.fileError(abs, err)
	}
	var kids []*future
	for _, e := range entries {
		if ctx.Err() != nil {
			break
		}
		p := filepath.Join(abs, e.name)
		fi, err := e.fi, e.err
		if err != nil {
			// Deleted from the directory since it was listed (readDir
			// states entries relative to the directory, so a rename does
			// not count): not an error, as if deleted just before.
			if !errors.Is(err, fs.ErrNotExist) {
				a.fileError(p, err)
			}
			continue
		}
		r := filepath.Join(rel, e.name)
		if a.isMount(r) || a.excluded(p, r, fi) {
			continue
		}
		if fi.IsDir() && a.opt.OneFileSystem && deviceOf(fi) != dev {
			if a.named[p] {
				// A path given to the backup below another one (backup -x
				// / /home): backed up, its own file system the one to
				// stay on below it (found by a hostile test: saved empty).
				kids = append(kids, a.saveEntry(ctx, d, p, r, fi, findNode(parent, e.name), deviceOf(fi)))
				continue
			}
			kids = append(kids, a.saveMountPoint(ctx, d, p, fi))
			continue
		}
		kids = append(kids, a.saveEntry(ctx, d, p, r, fi, findNode(parent, e.name), dev))
	}
	for _, m := range a.mounts[rel] {
		if ctx.Err() != nil {
			break
		}
		kids = append(kids, a.saveMount(ctx, m, findNode(parent, filepath.Base(m.Path))))
	}
	return a.finishDir(ctx, abs, n, kids, parent)
}

// openedDir checks that directory d, opened to be walked, is the one its
// parent's listing stated (n's device and inode). Another one (exchanged
// with a sibling, or replaced, since the listing) is saved with its own
// metadata and attributes, read from d, never the listed one's over
// another's entries (found by a hostile test: a 0700 directory's files
// were saved under a 0755 one's metadata).
func (a *Archiver) openedDir(d *dirHandle, abs string, n *tree.Node) {
	st, err := fstat(d.fd(), abs)
	if err != nil || (uint64(st.Dev) == n.DeviceID && st.Ino == n.Inode) {
		return
	}
	a.log.Info("directory replaced since it was listed: its metadata are taken from the directory read", "path", abs,
		"inode_listed", n.Inode, "inode_read", st.Ino)
	a.setStatus(abs, n, &st)
	n.Links = 0
	var xerrs []error
	n.Xattrs, xerrs = readXattrs(xattrSource{fd: d.fd()})
	a.reportXattrs(abs, xerrs)
}

// saveMountPoint saves directory abs, an entry of dir on another file
// system than its parent's, as an empty directory with its metadata: not
// crossing into it (Options.OneFileSystem), and still restoring the mount
// point (found by a hostile test: left out, a restored system lacked
// /proc, /sys, /dev).
func (a *Archiver) saveMountPoint(ctx context.Context, dir *dirHandle, abs string, fi fs.FileInfo) *future {
	n, xerrs, err := a.listedNode(dir, abs, fi)
	if err != nil {
		a.fileError(abs, err)
		return &future{done: closed(), err: err}
	}
	a.reportXattrs(abs, xerrs)
	a.C.Dirs.Add(1)
	return a.finishDir(ctx, abs, n, nil, nil)
}

// saveEntry saves one entry of any type: the entry of directory dir
// (nil: by its path abs) named by abs's last element.
func (a *Archiver) saveEntry(ctx context.Context, dir *dirHandle, abs, rel string, fi fs.FileInfo, pn *tree.Node, dev uint64) *future {
	n, xerrs, err := a.listedNode(dir, abs, fi)
	if err != nil {
		a.fileError(abs, err)
		return &future{done: closed(), err: err}
	}
	if n.Type != tree.File {
		a.reportXattrs(abs, xerrs)
	}
	switch n.Type {
	case tree.Dir:
		return a.walkDir(ctx, dir.ref(), abs, rel, n, pn, dev)
	case tree.File:
		a.C.Files.Add(1)
		a.C.BytesTotal.Add(int64(n.Size))
		if pn != nil && a.unchanged(pn, n) {
			a.reportXattrs(abs, xerrs)
			n.Content = pn.Content
			a.C.FilesUnmodified.Add(1)
			return doneFuture(n)
		}
		j := &fileJob{abs: abs, rel: rel, dir: dir.ref(), name: filepath.Base(abs), f: future{done: make(chan struct{}), node: n}, changed: pn != nil, xattrErrs: xerrs}
		select {
		case a.files <- j:
		case <-ctx.Done():
			j.dir.unref()
			return &future{done: closed(), err: context.Cause(ctx)}
		}
		return &j.f
	}
	return doneFuture(n)
}

// walkDir saves a subdirectory on a walker of its own when one is free,
// else here. Listing a directory and lstat-ing its entries waits on the
// disk for every inode not cached; several walkers overlap those waits
// (and the loading of parent trees), which is most of an unchanged
// re-backup. Never waiting for a walker keeps a walker that is itself
// walking from blocking on its own descendants.
//
// dir (owned: saveDir unrefs it) is the directory abs is an entry of, or
// nil to open abs by its path.
func (a *Archiver) walkDir(ctx context.Context, dir *dirHandle, abs, rel string, n *tree.Node, pn *tree.Node, dev uint64) *future {
	name := filepath.Base(abs)
	select {
	case a.walkers <- struct{}{}:
	default:
		return a.saveDir(ctx, dir, name, abs, rel, n, a.subtree(ctx, pn), dev)
	}
	f := &future{done: make(chan struct{}), node: n}
	a.walking.Go(func() {
		defer close(f.done)
		inner := a.saveDir(ctx, dir, name, abs, rel, n, a.subtree(ctx, pn), dev)
		<-a.walkers // the listing is done; its tree is finished apart
		f.err = inner.wait(ctx)
	})
	return f
}

// unchanged reports whether a file can reuse its parent snapshot's
// content: it looks unchanged, and every blob of its content is stored
// outside the packs prune marked for deletion (else it is read again, and
// those blobs stored anew).
func (a *Archiver) unchanged(old, cur *tree.Node) bool {
	if len(old.Content) > 0 && !a.opt.RereadSince.IsZero() && !old.ModTime.Before(a.opt.RereadSince) {
		return false
	}
	if old.Type != tree.File || old.Size != cur.Size || !old.ModTime.Equal(cur.ModTime) ||
		!old.ChangeTime.Equal(cur.ChangeTime) || old.Inode != cur.Inode || (old.Size != 0 && len(old.Content) == 0) {
		return false
	}
	for _, bid := range old.Content {
		if !a.repo.Reusable(bid) {
			return false
		}
	}
	return true
}

// finishDir saves the tree of a directory once all its entries are done.
// A tree equal to the parent snapshot's is that tree: its id is reused
// rather than encoded and hashed again, which is most of the tree work of
// an unchanged re-backup, unless the parent's tree blob is stored only in
// packs prune marked for deletion (then it is saved again).
func (a *Archiver) finishDir(ctx context.Context, abs string, n *tree.Node, kids []*future, parent *tree.Tree) *future {
	f := &future{done: make(chan struct{}), node: n}
	go func() {
		defer close(f.done)
		t := &tree.Tree{Nodes: make([]*tree.Node, 0, len(kids))}
		for _, k := range kids {
			if err := k.wait(ctx); err != nil {
				if ctx.Err() != nil {
					f.err = context.Cause(ctx)
					return
				}
				continue // a file error, already recorded
			}
			t.Nodes = append(t.Nodes, k.node)
		}
		t.Sort()
		if parent != nil && !parent.ID.IsNull() && t.Equal(parent) && a.repo.Reusable(parent.ID) {
			tid := parent.ID
			n.Subtree = &tid
			return
		}
		tid, err := tree.Save(ctx, a.repo, t)
		if err != nil {
			f.err = fmt.Errorf("saving tree of %s: %w", abs, err)
			a.fatal(f.err)
			return
		}
		n.Subtree = &tid
	}()
	return f
}

type fileJob struct {
	abs, rel string
	// dir is the directory the file is entry name of, opened relative to
	// it (nil: by its path abs); readFile unrefs it.
	dir     *dirHandle
	name    string
	f       future
	changed bool
	// xattrErrs are the errors reading the listed node's extended
	// attributes, reported by opened unless it takes the node from the
	// open descriptor.
	xattrErrs []error
}

// chunkJob is a run of chunks of one file that lie in one pooled buffer,
// given back once they are saved.
type chunkJob struct {
	buf    []byte
	chunks []pendingChunk
	wg     *sync.WaitGroup
}

type pendingChunk struct {
	data   []byte // within the job's buf
	from   []byte // the byte before data, then data; nil if Next grew the buffer
	res    *id.ID
	hashed bool // *res is data's blob ID already (split)
}

func (a *Archiver) getBuf(ctx context.Context) ([]byte, error) {
	select {
	case b := <-a.bufs:
		if a.dropLarge(b) {
			a.bigBufs.Add(-1)
		}
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// putBuf returns a chunk buffer to the pool. Each buffer would keep the
// size of the largest chunk it ever held, and the pool would settle at the
// maximum chunk size (8 MiB) times its length; so only as many buffers
// larger than four times the average chunk as there are workers are kept,
// and others are dropped for new ones. Dropping them all costs allocation
// instead: data with long runs without cut points (zeroed database pages)
// makes many maximum-size chunks. The threshold is four times, not two:
// the chunker sizes new buffers at twice the average and doubles them, and
// chunks a little over that are common enough in regular data (database
// pages) that dropping their buffers reallocated a quarter of the data.
func (a *Archiver) putBuf(b []byte) {
	if a.dropLarge(b) {
		if a.bigBufs.Add(1) > int64(a.opt.Workers) {
			a.bigBufs.Add(-1)
			b = nil
		}
	}
	a.bufs <- b[:0]
}

// dropLarge says whether b is a heap buffer that putBuf's bound applies
// to. A mapped buffer (run) is kept whatever it held: it has the largest
// chunk's size from the start, and only its pages used are resident.
func (a *Archiver) dropLarge(b []byte) bool {
	return cap(b) > 4*a.opt.Chunker.Avg && (len(a.chunkMem) == 0 || cap(b) != a.opt.Chunker.Max)
}

// readFile chunks one file and hands the chunks to the workers.
func (a *Archiver) readFile(ctx context.Context, j *fileJob) {
	defer close(j.f.done)
	defer j.dir.unref()
	if ctx.Err() != nil {
		j.f.err = context.Cause(ctx)
		return
	}
	ids, err := a.chunkFile(ctx, j)
	if err != nil {
		j.f.err = err
		if ctx.Err() == nil {
			a.fileError(j.abs, err)
		}
		return
	}
	j.f.node.Content = ids
	if j.changed {
		a.C.FilesChanged.Add(1)
	} else {
		a.C.FilesNew.Add(1)
	}
}

func (a *Archiver) chunkFile(ctx context.Context, j *fileJob) ([]id.ID, error) {
	if a.beforeOpen != nil {
		a.beforeOpen(j.abs)
	}
	if a.opt.Splitter == nil && j.f.node.Size < uint64(a.opt.Chunker.Min) {
		if ids, done, err := a.chunkSmall(ctx, j); done {
			return ids, err
		}
	}
	f, err := openJob(ctx, j)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fd := int(f.Fd()) // a regular file's: blocking already
	st, err := fstat(fd, j.abs)
	if err != nil {
		return nil, err
	}
	if err := a.opened(j, fd, &st); err != nil {
		return nil, err
	}
	size := st.Size

	c := &chunks{}
	// A large file is read past the page cache whichever splitter cuts
	// it (PostgreSQL's relation files too), unless it is sparse (and
	// OnChunk unset): chunkSparse then seeks over its holes, or, where
	// a splitter takes it, the splitter reads it through the page cache.
	holes := a.opt.OnChunk == nil && sparse(&st)
	rd := io.Reader(f)
	if !holes {
		if dr := newDirectReader(f, j.abs, size, a.directMin, &a.directBufs); dr != nil {
			defer dr.Close()
			rd = dr
			c.waited = dr.Waited
		}
	}
	var split chunker.Splitter
	if a.opt.Splitter != nil {
		split = a.opt.Splitter(j.rel, rd)
	}
	switch {
	case split != nil:
		err = a.split(ctx, j, c, split)
	case size < int64(a.opt.Chunker.Min):
		err = a.split(ctx, j, c, &wholeFile{rd: rd, size: size})
	case holes:
		err = a.chunkSparse(ctx, j, c, f, size)
	default:
		err = a.split(ctx, j, c, chunker.New(rd, a.opt.Chunker, a.opt.Seed))
	}
	changed := false
	if err == nil && !a.opt.ExpectWrites {
		changed, err = a.changedWhileRead(fd, j.abs, &st)
	}
	c.wg.Wait()
	return a.chunked(ctx, j, c, size, changed, err)
}

// chunked ends the chunking of a file once c.wg is done: err is the
// chunking's, size the file's when it was opened (the node's size, see
// opened), changed whether its status after the read differs from that
// (changedWhileRead; false with Options.ExpectWrites).
func (a *Archiver) chunked(ctx context.Context, j *fileJob, c *chunks, size int64, changed bool, err error) ([]id.ID, error) {
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	if c.off != size && a.opt.ExpectWrites {
		// The file grew or shrank while it was read, as a PostgreSQL
		// relation file does during a base backup.
		a.log.Warn("file changed during backup", "path", j.abs, "size_listed", j.f.node.Size, "size_opened", size, "read", c.off)
	} else if changed {
		// Written while it was read: what was read may never have been
		// the file's content at any one moment. It is stored (with the
		// metadata from before the read, so that the next backup reads
		// it again), warned about and counted: the backup is partial.
		a.log.Warn("file changed while it was read: its copy in the snapshot may mix its states", "path", j.abs,
			"size_opened", size, "read", c.off)
		a.C.ChangedWhileRead.Add(1)
		a.errMu.Lock()
		a.changed = append(a.changed, FileError{Path: j.abs, Err: errChangedWhileRead})
		a.errMu.Unlock()
	}
	if c.off != size && !changed && !a.opt.ExpectWrites {
		// A status that did not move while its read ended elsewhere than
		// its size: a pseudo-file (/proc, /sys) whose size is not its
		// length. Not a change (counting it made every backup of /
		// partial).
		a.log.Debug("file read to another length than its size, its status unchanged", "path", j.abs, "size", size, "read", c.off)
	}
	if c.off != int64(j.f.node.Size) {
		// What was read is stored consistently: the node records the
		// size actually read, or its content would not add up to its
		// size and the restore would refuse it.
		j.f.node.Size = uint64(c.off)
	}
	ids := make([]id.ID, len(c.res))
	for i, r := range c.res {
		ids[i] = *r
	}
	return ids, nil
}

// errChangedWhileRead is the Err of the entries Archiver.Changed lists.
const errChangedWhileRead = "changed while it was read: the snapshot holds a copy that may mix its states"

// chunks collects the chunk ids of one file as the workers compute them.
type chunks struct {
	res []*id.ID
	wg  sync.WaitGroup
	off int64 // bytes of the file chunked so far
	// waited reports whether the reader's last block was not read yet
	// when the chunker asked for it (directReader.Waited); nil when the
	// file is read otherwise.
	waited func() bool
}

// split hands every chunk of split to the workers. The caller waits for
// c.wg.
//
// Small chunks go in runs: a splitter that bounds its chunks
// (chunker.NewFixed: PostgreSQL's 32 KiB blocks) fills one buffer with
// up to batchBytes of them, and a worker takes the run whole. A hand-off
// a chunk made the bench's base backup (1.6 GiB) wake a worker 14,000
// times and a reader 32,000 times, and its goroutines wait 4 s in all for
// a processor while a quarter of the CPU was idle (docs/benchmarks.md).
func (a *Archiver) split(ctx context.Context, j *fileJob, c *chunks, split chunker.Splitter) error {
	most := 0 // the largest chunk split returns, if it says
	if b, ok := split.(interface{ MaxChunk() int }); ok && b.MaxChunk() <= batchBytes/2 {
		most = b.MaxChunk()
	}
	_, whole := split.(*wholeFile)
	for first := true; ; first = false {
		buf, err := a.getBuf(ctx)
		if err != nil {
			return err
		}
		if most > 0 && cap(buf) < batchBytes {
			buf = make([]byte, 0, batchBytes) // a heap buffer (no mapping): room for a run
		}
		job := &chunkJob{wg: &c.wg}
		var eof bool
		for {
			// Each chunk is read one byte past the end of the last, and
			// that byte lent to SaveBlobFrom (pendingChunk.from).
			var lend []byte
			if len(buf) < cap(buf) {
				lend = buf[len(buf)+1 : len(buf)+1]
			}
			data, err := split.Next(lend)
			if err == io.EOF {
				eof = true
				break
			}
			if err != nil {
				a.putBuf(buf)
				return fmt.Errorf("reading: %w", err)
			}
			var from []byte
			if len(data) > 0 && cap(lend) > 0 && &data[0] == &lend[:1][0] {
				from = buf[len(buf) : len(buf)+1+len(data)]
				buf = buf[:len(buf)+1+len(data)]
			} else {
				// Next grew the buffer, which only the first chunk of a
				// run may need (most bounds the others).
				buf = data
			}
			if a.opt.OnChunk != nil {
				a.opt.OnChunk(j.rel, c.off, data)
			}
			c.off += int64(len(data))
			a.C.BytesRead.Add(int64(len(data)))
			r := new(id.ID)
			c.res = append(c.res, r)
			// The reader hashes the chunk it has just copied, whose bytes
			// are still in its core's caches, when that costs no time:
			// the workers have a run queued already, or the reader waits
			// for the disk anyway. A worker that hashes it reads it from
			// the other core's cache; the backup of a 10 GiB file took
			// 4-7% less CPU this way. Where the reader is the bottleneck
			// (a fast disk, idle workers) the workers keep the hashing.
			hashed := from != nil && (len(a.chunks) > 0 || c.waited != nil && c.waited())
			if hashed {
				*r = a.repo.BlobID(data)
			}
			job.chunks = append(job.chunks, pendingChunk{data: data, from: from, res: r, hashed: hashed})
			if most == 0 || len(buf) >= batchBytes || cap(buf)-len(buf) <= most {
				break
			}
		}
		if len(job.chunks) == 0 {
			a.putBuf(buf)
			return nil
		}
		job.buf = buf
		c.wg.Add(1)
		if whole || first && eof {
			// The whole file in one run: its reader saves it. A file
			// handed to a worker made a backup of many small files wake
			// a worker per file, and took 15% longer.
			a.saveChunk(ctx, job)
			return nil
		}
		select {
		case a.chunks <- job:
		case <-ctx.Done():
			a.putBuf(buf)
			c.wg.Done()
			return context.Cause(ctx)
		}
		if eof {
			return nil
		}
	}
}

// batchBytes bounds a run of small chunks handed to a worker at once
// (split).
const batchBytes = 1 << 20

func (a *Archiver) saveChunk(ctx context.Context, j *chunkJob) {
	defer j.wg.Done()
	for _, p := range j.chunks {
		if ctx.Err() != nil {
			break
		}
		var bid id.ID
		var err error
		if p.from != nil {
			if !p.hashed {
				*p.res = a.repo.BlobID(p.data)
			}
			bid = *p.res
			_, err = a.repo.SaveBlobFrom(ctx, index.DataBlob, bid, p.from)
		} else {
			bid, _, err = a.repo.SaveBlob(ctx, index.DataBlob, p.data)
		}
		if err != nil {
			a.fatal(fmt.Errorf("saving data: %w", err))
			break
		}
		*p.res = bid
	}
	a.putBuf(j.buf)
}

// wholeFile is the splitter for files smaller than the minimum chunk: the
// whole file is one chunk, without a chunker's set-up cost.
type wholeFile struct {
	rd   io.Reader
	size int64
	done bool
}

func (w *wholeFile) Next(buf []byte) ([]byte, error) {
	if w.done {
		return nil, io.EOF
	}
	w.done = true
	// Read one byte past the stat size to notice growth; a grown file is
	// still read whole.
	want := int(w.size) + 1
	if cap(buf) < want {
		buf = make([]byte, 0, want)
	}
	buf = buf[:want]
	n, err := w.read(buf)
	if err != nil {
		return nil, err
	}
	if n == want {
		rest, err := io.ReadAll(w.rd)
		if err != nil {
			return nil, err
		}
		buf = append(buf, rest...)
		n = len(buf)
	}
	if n == 0 {
		return nil, io.EOF
	}
	return buf[:n], nil
}

// read fills buf as io.ReadFull does, but takes a short read that ends
// at the stat size as the end of the file: a further read, which would
// return 0 bytes from a file that did not grow, is a system call more per
// small file (one in seven of a first backup of tiny files). On a local
// file system a read that asks for a byte past the stat size and gets
// exactly the stat size has met the end; a file that grows after it could
// as well have grown after the further read, and what was read is stored
// consistently either way (chunkFile). Short reads before that (a network
// file system's) are read on.
func (w *wholeFile) read(buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := w.rd.Read(buf[n:])
		n += m
		switch {
		case err == io.EOF:
			return n, nil
		case err != nil:
			return n, err
		case m > 0 && int64(n) == w.size:
			return n, nil
		}
	}
	return n, nil
}

// Summary returns the counters as a snapshot summary.
func (a *Archiver) Summary(start time.Time) *snapshot.Summary {
	return &snapshot.Summary{
		Start:            start,
		End:              time.Now(),
		Files:            a.C.Files.Load(),
		Dirs:             a.C.Dirs.Load(),
		FilesNew:         a.C.FilesNew.Load(),
		FilesChanged:     a.C.FilesChanged.Load(),
		FilesUnmodified:  a.C.FilesUnmodified.Load(),
		TotalBytes:       a.C.BytesTotal.Load(),
		BytesRead:        a.C.BytesRead.Load(),
		Errors:           a.C.Errors.Load(),
		ChangedWhileRead: a.C.ChangedWhileRead.Load(),
	}
}
