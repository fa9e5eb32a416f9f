package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Batching: a command called very often (pg archive-wal, once per WAL
// segment, with PostgreSQL waiting) does not append a record per call. Each
// call adds an item to a local spool file; a call that finds the spool due
// (SpoolItems items, or its oldest SpoolAge old) appends one record with
// all of them and empties it. docs/audit.md, "pg archive-wal: batched".
const (
	SpoolItems = 64
	SpoolAge   = time.Minute
)

// Spool is the local spool file of one log's batched calls.
type Spool struct {
	path string
}

// NewSpool returns the spool of log logID in dir.
func NewSpool(dir, logID string) *Spool {
	return &Spool{path: filepath.Join(dir, "audit-"+logID+".spool")}
}

// Path is the spool's file.
func (s *Spool) Path() string { return s.path }

// Add appends items to the spool, durably (one fsync): once Add
// returns, each is recorded at least once, by the next flush. The spool
// must be a regular file (not a link) in a directory of this user's that
// no one else may write.
func (s *Spool) Add(items ...BatchItem) error {
	if len(items) == 0 {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	var line []byte
	for i, it := range items {
		b, err := json.Marshal(it)
		if err != nil {
			return err
		}
		if i > 0 {
			line = append(line, '\n')
		}
		line = append(line, b...)
	}
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		return fmt.Errorf("audit spool: %w", err)
	}
	err = checkPrivate(filepath.Dir(s.path), f)
	// Under the lock, so that no line lands between a flush's read and
	// its truncation.
	if err == nil {
		err = lockFile(f)
	}
	if err == nil {
		line, err = afterTorn(f, append(line, '\n'))
	}
	if err == nil {
		_, err = f.Write(line)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("audit spool %s: %w", s.path, err)
	}
	return nil
}

// Flush appends the spooled items with record when they are due (or
// always, with force), under an exclusive lock of the spool, and then
// empties it. record is called with the items in spool order; when it
// fails the items stay. It returns how many items were flushed.
func (s *Spool) Flush(now time.Time, force bool, record func([]BatchItem) error) (int, error) {
	f, err := os.OpenFile(s.path, os.O_RDWR|noFollow, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("audit spool: %w", err)
	}
	defer f.Close()
	if err := checkPrivate(filepath.Dir(s.path), f); err != nil {
		return 0, fmt.Errorf("audit spool: %w", err)
	}
	if err := lockFile(f); err != nil {
		return 0, fmt.Errorf("audit spool %s: %w", s.path, err)
	}
	items, err := readItems(f)
	if err != nil {
		return 0, fmt.Errorf("audit spool %s: %w", s.path, err)
	}
	if len(items) == 0 {
		return 0, nil
	}
	if !force && len(items) < SpoolItems && now.Sub(items[0].Time) < SpoolAge {
		return 0, nil
	}
	total := len(items)
	for len(items) > 0 {
		n := min(len(items), 4096) // a record of 4096 items is about 500 KiB
		if err := record(items[:n]); err != nil {
			return 0, err
		}
		items = items[n:]
	}
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("audit spool %s: emptying it after its items were recorded (they will be recorded again): %w", s.path, err)
	}
	return total, f.Sync()
}

// afterTorn returns line, after a newline if the spool does not end with
// one: a write torn by a crash or a full disk would otherwise swallow the
// line appended after it (neither would parse).
func afterTorn(f *os.File, line []byte) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return line, err
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, fi.Size()-1); err != nil {
		return nil, err
	}
	if last[0] != '\n' {
		line = append([]byte{'\n'}, line...)
	}
	return line, nil
}

// readItems reads the spool's lines; a torn last line (a crash inside
// Add's write) is skipped.
func readItems(f *os.File) ([]BatchItem, error) {
	var items []BatchItem
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var it BatchItem
		if err := json.Unmarshal(line, &it); err != nil {
			continue
		}
		items = append(items, it)
	}
	return items, sc.Err()
}
