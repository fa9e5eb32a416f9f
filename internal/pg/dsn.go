package pg

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// errDSNPassword refuses a connection string that carries a password. It
// never quotes the string.
var errDSNPassword = errors.New("the PostgreSQL connection string holds a password, which would be visible in the process list, shell history and config files: " +
	"leave it out and put it in a password file (~/.pgpass, or the file PGPASSFILE names, mode 0600) or in PGPASSWORD")

// passwordKeyword matches a password=... setting in a keyword/value
// connection string (libpq allows spaces around the '=').
var passwordKeyword = regexp.MustCompile(`(^|\s)password\s*=`)

// checkDSN refuses a connection string, in either of libpq's forms, that
// carries a password (in the URL's user info or as a parameter).
func checkDSN(dsn string) error {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return nil // pgx reports the syntax error, with the password redacted
		}
		if _, set := u.User.Password(); set || u.Query().Has("password") {
			return errDSNPassword
		}
		return nil
	}
	if passwordKeyword.MatchString(dsn) {
		return errDSNPassword
	}
	return nil
}
