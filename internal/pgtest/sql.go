package pgtest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSN is a libpq connection string for the cluster's superuser over the
// Unix socket.
func (c *Cluster) DSN() string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", c.SocketDir, c.Port)
}

// Conn opens a new connection, closed when the test ends.
func (c *Cluster) Conn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := c.connect(30 * time.Second)
	if err != nil {
		t.Fatalf("connecting to %s: %v\nserver log:\n%s", c.DSN(), err, c.LogTail())
	}
	t.Cleanup(func() {
		ctx, cancel := timeoutCtx(5 * time.Second)
		defer cancel()
		conn.Close(ctx)
	})
	return conn
}

func (c *Cluster) connect(d time.Duration) (*pgx.Conn, error) {
	ctx, cancel := timeoutCtx(d)
	defer cancel()
	return pgx.Connect(ctx, c.DSN())
}

// Exec runs sql (any number of statements when there are no args) on the
// cluster's shared connection and fails the test on error.
func (c *Cluster) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	c.withConn(t, sql, func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
}

// QueryString runs a query returning one row and returns its first column
// in PostgreSQL's text form ("" for NULL). No row fails the test.
func (c *Cluster) QueryString(t testing.TB, sql string, args ...any) string {
	t.Helper()
	var out string
	c.withConn(t, sql, func(ctx context.Context, conn *pgx.Conn) error {
		// Text results: any type reads as PostgreSQL prints it.
		rows, err := conn.Query(ctx, sql, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return err
			}
			return fmt.Errorf("query returned no row")
		}
		if raw := rows.RawValues(); len(raw) > 0 {
			out = string(raw[0])
		}
		rows.Close()
		return rows.Err()
	})
	return out
}

// QueryInt is QueryString for integer results.
func (c *Cluster) QueryInt(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	s := c.QueryString(t, sql, args...)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: result %q is not an integer", sql, s)
	}
	return n
}

// withConn runs fn on the shared connection, reconnecting when it was
// closed (by a restart, say). Calls are serialised: pgx connections are
// not safe for concurrent use; tests wanting parallel sessions use Conn.
func (c *Cluster) withConn(t testing.TB, sql string, fn func(context.Context, *pgx.Conn) error) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || c.conn.IsClosed() {
		conn, err := c.connect(30 * time.Second)
		if err != nil {
			t.Fatalf("connecting to %s: %v\nserver log:\n%s", c.DSN(), err, c.LogTail())
		}
		c.conn = conn
	}
	ctx, cancel := timeoutCtx(sqlTimeout)
	defer cancel()
	if err := fn(ctx, c.conn); err != nil {
		t.Fatalf("SQL %q: %v", sql, err)
	}
}

func timeoutCtx(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
