package pg

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestCheckDSN(t *testing.T) {
	for dsn, refused := range map[string]bool{
		"":                                      false,
		"host=/run/postgresql user=postgres":    false,
		"host=db passfile=/etc/pgpass":          false,
		"host=db password=hunter2":              true,
		"password = hunter2 host=db":            true,
		"host=db\tpassword='hunter 2'":          true,
		"postgres://app@db/ledger":              false,
		"postgres://app:hunter2@db/ledger":      true,
		"postgresql://app:@db/ledger":           true,
		"postgres://db/ledger?password=hunter2": true,
		"postgres://db/ledger?sslmode=require":  false,
	} {
		err := checkDSN(dsn)
		if refused != errors.Is(err, errDSNPassword) {
			t.Errorf("%q: refused %v, want %v", dsn, err != nil, refused)
		}
	}
	// Connect refuses before connecting, and never quotes the secret.
	_, err := Connect(context.Background(), "host=/nonexistent password=hunter2")
	if !errors.Is(err, errDSNPassword) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Connect: %v", err)
	}
}
