package pg

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nestguard/nestguard/internal/pgmeta"
)

// ApplicationName is the application_name of backup sessions.
const ApplicationName = "nestguard backup"

// Server describes the cluster a session is connected to.
type Server struct {
	VersionNum     int    // server_version_num, e.g. 150018
	DataDir        string // data_directory as the server sees it
	WALSegmentSize int64
	DataChecksums  bool
	BlockSize      int
	SystemID       uint64
	Timeline       uint32 // of the latest checkpoint
	Tablespaces    []Tablespace
}

// Session is the one connection that holds a non-exclusive base backup
// open: PostgreSQL ends the backup when this connection closes, so it
// stays open, unused by anything else, from Start to Stop.
type Session struct {
	conn    *pgx.Conn
	Server  Server
	started bool
}

// BackupStart is what pg_backup_start reported.
type BackupStart struct {
	LSN      LSN
	Time     time.Time // server clock, once the start checkpoint is done
	Timeline uint32
}

// BackupStop is what pg_backup_stop returned: the files to store exactly.
type BackupStop struct {
	LSN           LSN
	Time          time.Time // server clock after the stop (and the WAL wait)
	BackupLabel   string
	TablespaceMap string
}

// Connect opens a session to dsn (a libpq connection string or URL; ""
// uses the PG* environment variables) and reads what a backup needs to
// know about the server. A dsn holding a password is refused: passwords
// come from a password file or PGPASSWORD.
func Connect(ctx context.Context, dsn string) (*Session, error) {
	if err := CheckDSN(dsn); err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL connection string: %w", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = ApplicationName // visible in pg_stat_activity
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL (check --dsn or the PG* environment): %w", err)
	}
	s := &Session{conn: conn}
	if err := s.readServer(ctx); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

func (s *Session) readServer(ctx context.Context) error {
	var (
		version, segSize, blockSize, checksums string
		sysID                                  int64
		tli                                    int64
	)
	err := s.conn.QueryRow(ctx, `SELECT current_setting('server_version_num'),
		current_setting('data_directory'),
		(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'),
		current_setting('block_size'),
		current_setting('data_checksums'),
		(SELECT system_identifier FROM pg_control_system()),
		(SELECT timeline_id FROM pg_control_checkpoint())`).
		Scan(&version, &s.Server.DataDir, &segSize, &blockSize, &checksums, &sysID, &tli)
	if err != nil {
		return fmt.Errorf("reading the server's settings (the backup role needs superuser or pg_read_all_settings and EXECUTE on pg_control_system): %w", err)
	}
	if s.Server.VersionNum, err = strconv.Atoi(version); err != nil {
		return fmt.Errorf("server_version_num %q: %w", version, err)
	}
	if s.Server.VersionNum < 100000 {
		return fmt.Errorf("PostgreSQL %d is not supported: nestguard needs PostgreSQL 10 or later", s.Server.VersionNum)
	}
	if s.Server.WALSegmentSize, err = strconv.ParseInt(segSize, 10, 64); err != nil {
		return fmt.Errorf("wal_segment_size %q: %w", segSize, err)
	}
	if s.Server.BlockSize, err = strconv.Atoi(blockSize); err != nil {
		return fmt.Errorf("block_size %q: %w", blockSize, err)
	}
	if s.Server.BlockSize != PageSize {
		return fmt.Errorf("the server's block_size is %d: nestguard supports only PostgreSQL's default of %d", s.Server.BlockSize, PageSize)
	}
	s.Server.DataChecksums = checksums == "on"
	s.Server.SystemID = uint64(sysID)
	s.Server.Timeline = uint32(tli)

	rows, err := s.conn.Query(ctx, `SELECT oid, pg_tablespace_location(oid) FROM pg_tablespace
		WHERE spcname NOT IN ('pg_default', 'pg_global') ORDER BY oid`)
	if err != nil {
		return fmt.Errorf("listing tablespaces: %w", err)
	}
	s.Server.Tablespaces, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tablespace, error) {
		var t Tablespace
		err := r.Scan(&t.OID, &t.Location)
		return t, err
	})
	if err != nil {
		return fmt.Errorf("listing tablespaces: %w", err)
	}
	return nil
}

// Start puts the server in backup mode with an immediate checkpoint.
func (s *Session) Start(ctx context.Context, label string) (*BackupStart, error) {
	q := `SELECT lsn::text, clock_timestamp() FROM pg_backup_start($1, fast => true) AS lsn`
	if s.Server.VersionNum < 150000 {
		q = `SELECT lsn::text, clock_timestamp() FROM pg_start_backup($1, true, false) AS lsn` // non-exclusive
	}
	var (
		lsn string
		st  BackupStart
	)
	if err := s.conn.QueryRow(ctx, q, label).Scan(&lsn, &st.Time); err != nil {
		return nil, fmt.Errorf("starting the backup (the role needs EXECUTE on pg_backup_start, and wal_level replica or logical): %w", err)
	}
	s.started = true
	var err error
	if st.LSN, err = pgmeta.ParseLSN(lsn); err != nil {
		return nil, fmt.Errorf("backup start location: %w", err)
	}
	var tli int64
	if err := s.conn.QueryRow(ctx, `SELECT timeline_id FROM pg_control_checkpoint()`).Scan(&tli); err != nil {
		return nil, fmt.Errorf("reading the backup's timeline: %w", err)
	}
	st.Timeline = uint32(tli)
	return &st, nil
}

// Stop ends backup mode. PostgreSQL switches to a new WAL segment, so the
// archiver hands the backup's last one to archive_command; it is not asked
// to wait for that (it checks once a second, which added a second to every
// backup): the caller waits for the segments to be in the repository,
// which is what completes a backup anyway. ctx bounds the call.
func (s *Session) Stop(ctx context.Context) (*BackupStop, error) {
	if !s.started {
		return nil, errors.New("stopping a backup that was not started")
	}
	q := `SELECT lsn::text, labelfile, coalesce(spcmapfile, ''), clock_timestamp() FROM pg_backup_stop(wait_for_archive => false)`
	if s.Server.VersionNum < 150000 {
		q = `SELECT lsn::text, labelfile, coalesce(spcmapfile, ''), clock_timestamp() FROM pg_stop_backup(false, false)`
	}
	var (
		lsn string
		st  BackupStop
	)
	if err := s.conn.QueryRow(ctx, q).Scan(&lsn, &st.BackupLabel, &st.TablespaceMap, &st.Time); err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("stopping the backup: pg_backup_stop did not return in time: %w", context.Cause(ctx))
		case s.conn.IsClosed():
			return nil, fmt.Errorf("stopping the backup: the PostgreSQL session holding the backup open was lost, so the server aborted the backup: %w", err)
		}
		return nil, fmt.Errorf("stopping the backup: %w", err)
	}
	s.started = false
	var err error
	if st.LSN, err = pgmeta.ParseLSN(lsn); err != nil {
		return nil, fmt.Errorf("backup stop location: %w", err)
	}
	return &st, nil
}

// Watch pings the session every interval while the files are copied and
// cancels the returned context if the connection is lost, since the server
// has then aborted the backup and the copy would be useless. The returned
// function stops watching; the session must not be used until it is called.
func (s *Session) Watch(ctx context.Context, interval time.Duration) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-wctx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(wctx, max(interval, 10*time.Second))
				err := s.conn.Ping(pctx)
				pcancel()
				if err != nil && wctx.Err() == nil {
					cancel(fmt.Errorf("the PostgreSQL session holding the backup open was lost, so the server aborted the backup: %w", err))
					return
				}
			}
		}
	}()
	return wctx, func() {
		close(done)
		<-stopped
		cancel(nil)
	}
}

// Close ends the session. A backup still in progress is aborted by the
// server when its session ends, which is how a failed copy is cleaned up.
func (s *Session) Close(ctx context.Context) error {
	return s.conn.Close(ctx)
}
