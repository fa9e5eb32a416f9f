package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nestguard/nestguard/internal/hugemem"
	"github.com/nestguard/nestguard/internal/pgmeta"
)

// WorkerOptions tune RunArchiveWorker.
type WorkerOptions struct {
	// WALDir is the directory of the WAL files (pg_wal), whose
	// archive_status holds PostgreSQL's queue.
	WALDir string
	// SpoolDir is the spool; default ArchiveSpoolName in WALDir.
	SpoolDir string
	// Ahead bounds the files in hand at once: being archived or awaiting
	// their acknowledgement (default DefaultArchiveAhead).
	Ahead int
	// Parallel is how many files are read, compressed and stored at once
	// (default 2).
	Parallel int
	// Idle is how long the worker waits for more ready files before it
	// exits (default DefaultWorkerIdle).
	Idle time.Duration
	// Poll is the interval between looks at archive_status (default
	// 10 ms) where directory notifications are unavailable; with them
	// (Linux) the worker looks when archive_status or the spool
	// changes, and at least every watchedPoll.
	Poll time.Duration
	// Record is given each group of outcomes once the stored files are
	// durable and before they are acknowledged: the audit trail. When it
	// fails, the group's files are answered with its error (PostgreSQL
	// calls again; the files are then found stored, and recorded).
	Record func(ctx context.Context, outs []WorkerOutcome) error
	Log    *slog.Logger
	// Hook, if set, is called at each step of a group: "archived" (its
	// files stored, their names not yet synced), "stored" (every file of
	// the group is durable), "recorded" (Record returned) and
	// "acknowledged" (after the first marker). Tests stop the process
	// there.
	Hook func(step string)
}

// WorkerOutcome is what happened to one file.
type WorkerOutcome struct {
	Path    string // as PostgreSQL names it: WALDir/name
	Started time.Time
	ArchiveResult
	Err error
}

// WorkerStats counts what a worker did.
type WorkerStats struct {
	Archived, Failed int
}

func (o *WorkerOptions) defaults() {
	if o.SpoolDir == "" {
		o.SpoolDir = filepath.Join(o.WALDir, ArchiveSpoolName)
	}
	if o.Ahead <= 0 {
		o.Ahead = DefaultArchiveAhead
	}
	if o.Parallel <= 0 {
		o.Parallel = 2
	}
	if o.Idle <= 0 {
		o.Idle = DefaultWorkerIdle
	}
	if o.Poll <= 0 {
		o.Poll = 10 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Hook == nil {
		o.Hook = func(string) {}
	}
}

// RunArchiveWorker is the background worker of the asynchronous mode. It
// takes the spool's lock (if another worker holds it, it returns at once:
// there is only ever one), then archives the files PostgreSQL queued in
// WALDir/archive_status, oldest first (timeline history first, as
// PostgreSQL does), with repo opened once and o.Parallel files at a time,
// and acknowledges each in the spool once it is durable in the repository
// and recorded. Files finished while a group was being acknowledged form
// the next group (group commit). It exits after o.Idle without work, or
// when ctx ends.
//
// Killed at any instant, it leaves no acknowledgement of a file that is not
// durable: a marker is written only after its file's object was stored
// (temporary file, fsync, link) and the group's names synced (one
// directory fsync), and after the group was recorded.
func RunArchiveWorker(ctx context.Context, repo WALRepo, o WorkerOptions) (WorkerStats, error) {
	o.defaults()
	var stats WorkerStats
	if err := makeSpool(o.SpoolDir); err != nil {
		return stats, err
	}
	unlock, ok, err := lockSpool(o.SpoolDir)
	if err != nil || !ok {
		return stats, err
	}
	defer unlock()
	os.Remove(filepath.Join(o.SpoolDir, globalErrorName))

	var bufs hugemem.Pool // a segment's memory, reused by the next
	defer bufs.Close()
	// On return: no more jobs, the running ones stopped, and all of them
	// ended before the lock is released.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan string, o.Ahead)
	done := make(chan WorkerOutcome, o.Ahead)
	for range o.Parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for name := range jobs {
				out := WorkerOutcome{Path: filepath.Join(o.WALDir, name), Started: time.Now()}
				out.ArchiveResult, out.Err = archiveWAL(ctx, repo, out.Path, name, archiveOpts{identify: true, deferred: true, bufs: &bufs})
				out.Name = name
				done <- out
			}
		}()
	}
	defer close(jobs)

	watch := watchDirs(filepath.Join(o.WALDir, "archive_status"), o.SpoolDir)
	defer watch.Close()
	poll := o.Poll
	if watch != nil {
		poll = max(poll, watchedPoll)
	}

	inHand := map[string]bool{}
	lastWork := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		if len(inHand) < o.Ahead {
			names, err := readyToArchive(o.WALDir, o.SpoolDir, inHand, o.Log)
			if err != nil {
				return stats, err
			}
			for _, n := range names[:min(len(names), o.Ahead-len(inHand))] {
				inHand[n] = true
				jobs <- n
			}
		}
		if len(inHand) == 0 {
			if time.Since(lastWork) >= o.Idle {
				return stats, nil
			}
			select {
			case <-ctx.Done():
			case <-watch.C():
			case <-time.After(min(poll, o.Idle-time.Since(lastWork))):
			}
			continue
		}
		var group []WorkerOutcome
		select {
		case out := <-done:
			group = append(group, out)
		case <-watch.C():
			continue // look for more ready files meanwhile
		case <-time.After(poll):
			continue
		case <-ctx.Done():
			return stats, ctx.Err()
		}
	drain:
		for {
			select {
			case out := <-done:
				group = append(group, out)
			default:
				break drain
			}
		}
		if err := acknowledge(ctx, repo, o, group, &stats); err != nil {
			return stats, err
		}
		for _, out := range group {
			delete(inHand, out.Name)
		}
		lastWork = time.Now()
	}
}

// acknowledge makes the group's files durable under their names (one
// directory sync for all, where the store needs one), records the
// outcomes and writes their markers.
func acknowledge(ctx context.Context, repo WALRepo, o WorkerOptions, group []WorkerOutcome, stats *WorkerStats) error {
	o.Hook("archived")
	var names []string
	for _, out := range group {
		if out.Err == nil {
			names = append(names, out.Name)
		}
	}
	if err := syncWAL(ctx, repo, names); err != nil {
		for i := range group {
			if group[i].Err == nil {
				group[i].Err = err
			}
		}
	}
	o.Hook("stored")
	if o.Record != nil {
		if err := o.Record(ctx, group); err != nil {
			for i := range group {
				if group[i].Err == nil {
					group[i].Err = fmt.Errorf("archived, but not recorded in the audit trail: %w", err)
				}
			}
		}
	}
	o.Hook("recorded")
	for i, out := range group {
		var err error
		if out.Err != nil {
			stats.Failed++
			o.Log.Warn("archiving WAL in the background", "file", out.Name, "err", out.Err)
			err = writeMarker(o.SpoolDir, out.Name+".error", formatError(out.Name, out.Err))
		} else {
			stats.Archived++
			o.Log.Info("archived WAL", "file", out.Name, "bytes", out.Size, "already_archived", out.AlreadyArchived,
				"store_ms", out.Duration.Milliseconds())
			err = writeMarker(o.SpoolDir, out.Name+".ok", formatOK(out.Name, out.Size, out.ident, out.digest))
		}
		if err != nil {
			return err
		}
		if i == 0 {
			o.Hook("acknowledged")
		}
	}
	return ctx.Err()
}

// readyToArchive lists the files PostgreSQL queued that are neither in hand
// nor answered in the spool, in PostgreSQL's order: timeline history
// files first, then by name (oldest first). Answers for files no longer
// queued (PostgreSQL took them) are removed, as are stale temporary
// markers.
func readyToArchive(walDir, spool string, inHand map[string]bool, log *slog.Logger) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(walDir, "archive_status"))
	if err != nil {
		return nil, fmt.Errorf("reading PostgreSQL's archive queue: %w", err)
	}
	ready := map[string]bool{}
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".ready"); ok && pgmeta.IsWALFileName(n) {
			ready[n] = true
		}
	}
	answered := map[string]bool{}
	marks, err := os.ReadDir(spool)
	if err != nil {
		return nil, fmt.Errorf("reading the WAL archive spool: %w", err)
	}
	for _, e := range marks {
		m := e.Name()
		n, ok := strings.CutSuffix(m, ".ok")
		if !ok {
			n, ok = strings.CutSuffix(m, ".error")
		}
		switch {
		case ok && ready[n]:
			answered[n] = true
		case ok && pgmeta.IsWALFileName(n):
			if err := os.Remove(filepath.Join(spool, m)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				log.Debug("cleaning the WAL archive spool", "err", err)
			}
		case strings.HasPrefix(m, ".tmp-"):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Minute {
				os.Remove(filepath.Join(spool, m))
			}
		}
	}
	var names []string
	for n := range ready {
		if !answered[n] && !inHand[n] {
			names = append(names, n)
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if ha, hb := pgmeta.IsHistory(a), pgmeta.IsHistory(b); ha != hb {
			if ha {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return names, nil
}

// watchedPoll is how often the worker and the calls look anyway where
// directory notifications wake them (dirWatch): a safety net only.
const watchedPoll = 100 * time.Millisecond
