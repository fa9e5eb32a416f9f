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
		// libpq reads these too (hostile test: all were accepted).
		"postgres://u:secret@h:badport/db":    true,
		"postgres://u:sec%zzret@h/db":         true,
		"host='h'password=secret":             true,
		"host=h sslpassword=secret":           true,
		"postgres://h/db?sslpassword=secret":  true,
		"postgres://h/db?pass%77ord=secret":   true,
		"host='pass word=x' user=u":           false,
		`host=h\ password=x user=u`:           true, // libpq reads no password here; the lenient pass refuses it anyway
		"application_name=password=x":         false,
		"postgres://u:p?x@h/db":               true, // libpq's user info ends at '@' before any '/' (review)
		"postgres://u?x:p@h/db":               true,
		"host=db1 port 5432 password=hunter2": true, // refused by libpq, still written down
	} {
		err := CheckDSN(dsn)
		if refused != (errors.Is(err, errDSNPassword) || errors.Is(err, errDSNSSLPassword)) {
			t.Errorf("%q: refused %v, want %v", dsn, err != nil, refused)
		}
		// What is refused is redacted: the audit record of the refused
		// command keeps the redacted string.
		if r := RedactDSN(dsn); refused && (r == dsn || strings.Contains(r, "secret") || strings.Contains(r, "hunter2")) {
			t.Errorf("%q refused, but redacted as %q", dsn, r)
		}
	}
	// Connect refuses before connecting, and never quotes the secret.
	_, err := Connect(context.Background(), "host=/nonexistent password=hunter2")
	if !errors.Is(err, errDSNPassword) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Connect: %v", err)
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"host=/run/pg user=u":                     "host=/run/pg user=u",
		"host=h password=s3cret dbname=d":         "host=h password=xxxxx dbname=d",
		"password = 's3 \\' cret' host=h":         "password = xxxxx host=h",
		"host=h\tpassword='s3cret":                "host=h\tpassword=xxxxx",
		"postgres://u:s3cret@h:5432/d":            "postgres://u:xxxxx@h:5432/d",
		"postgresql://u:s3/cret@h:bad/d?x=1":      "postgresql://u:xxxxx@h:bad/d?x=1",
		"postgres://u@h/d?sslmode=x&password=s3c": "postgres://u@h/d?sslmode=x&password=xxxxx",
		"postgres://u@h?password=s3c":             "postgres://u@h?password=xxxxx",
		"postgres://u@h/d":                        "postgres://u@h/d",
		"s3://bucket/prefix":                      "s3://bucket/prefix",
		"host='h'password=s3cret user=u":          "host='h'password=xxxxx user=u",
		"host=h sslpassword='a b' user=u":         "host=h sslpassword=xxxxx user=u",
		"postgres://h/d?sslpassword=s3c":          "postgres://h/d?sslpassword=xxxxx",
		"postgres://u:p?x@h/db":                   "postgres://u:xxxxx@h/db",
		"postgres://h/db?pass%77ord=s3c&x=1":      "postgres://h/db?pass%77ord=xxxxx&x=1", // CheckDSN refuses it: an audit record must not keep it
		"host=db1 port 5432 password=hunter2":     "host=db1 port 5432 password=xxxxx",
		"host=db1 port 5432 sslpassword='a b' x":  "host=db1 port 5432 sslpassword=xxxxx x",
		"":                                        "",
	} {
		if got := RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
