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

// passwordValue matches a password setting of a keyword/value connection
// string with its value: a single-quoted string (with \' and \\ escapes)
// or a run of non-space characters.
var passwordValue = regexp.MustCompile(`((?:^|\s)password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\S*)`)

// RedactDSN returns s with any password it carries as a connection
// string, in either of libpq's forms (URL user info or parameter, or a
// password=... setting), replaced by "xxxxx": what may be written down
// (an audit record of a command refused for that password). Anything
// else is returned as it is.
func RedactDSN(s string) string {
	scheme, rest, isURL := strings.Cut(s, "://")
	if !isURL || strings.ContainsAny(scheme, " =") {
		return passwordValue.ReplaceAllString(s, "${1}xxxxx")
	}
	// By hand rather than with url.Parse, which refuses some strings
	// (a bad port, a '/' in the password) that still carry a password.
	rest, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if user, _, ok := strings.Cut(rest[:at], ":"); ok {
			rest = user + ":xxxxx" + rest[at:]
		}
	}
	if !hasQuery {
		return scheme + "://" + rest
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		if k, _, _ := strings.Cut(p, "="); k == "password" {
			params[i] = "password=xxxxx"
		}
	}
	return scheme + "://" + rest + "?" + strings.Join(params, "&")
}
