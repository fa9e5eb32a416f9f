package pg

import (
	"errors"
	"net/url"
	"strings"
)

// errDSNPassword refuses a connection string that carries a password. It
// never quotes the string.
var errDSNPassword = errors.New("the PostgreSQL connection string holds a password, which would be visible in the process list, shell history and config files: " +
	"leave it out and put it in a password file (~/.pgpass, or the file PGPASSFILE names, mode 0600) or in PGPASSWORD")

// secretParam reports whether a connection parameter holds a secret:
// the password, or the passphrase of the client's SSL key.
func secretParam(key string) bool { return key == "password" || key == "sslpassword" }

// checkDSN refuses a connection string, in either of libpq's forms, that
// carries a password: in a URL's user info or a parameter, or as a
// password (or sslpassword) setting. It reads the string as libpq does,
// not as a stricter parser would: a URL that net/url refuses (a bad
// port, a bad escape) or a setting written right after a quoted value
// (host='h'password=x) still carries what libpq would use (hostile
// test).
func checkDSN(dsn string) error {
	if u, ok := splitURL(dsn); ok {
		if u.hasPassword() {
			return errDSNPassword
		}
		return nil
	}
	for _, p := range conninfoParams(dsn) {
		if secretParam(p.key) {
			return errDSNPassword
		}
	}
	return nil
}

// connURL is a connection URI cut as libpq cuts it, by hand: the scheme,
// what comes before the query (user info, hosts, database) and the
// query's parameters.
type connURL struct {
	scheme, rest string
	params       []string // "key=value", as written
	query        bool     // the URL has a '?'
}

// splitURL cuts s if it is a connection URI (postgres:// or
// postgresql://).
func splitURL(s string) (connURL, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme != "postgres" && scheme != "postgresql" {
		return connURL{}, false
	}
	u := connURL{scheme: scheme}
	var query string
	u.rest, query, u.query = strings.Cut(rest, "?")
	if u.query {
		u.params = strings.Split(query, "&")
	}
	return u, true
}

// userInfoEnd is the index of the '@' that ends the user info, or -1.
func (u connURL) userInfoEnd() int { return strings.LastIndexByte(u.rest, '@') }

func (u connURL) hasPassword() bool {
	if at := u.userInfoEnd(); at >= 0 && strings.Contains(u.rest[:at], ":") {
		return true
	}
	for _, p := range u.params {
		if secretParam(paramKey(p)) {
			return true
		}
	}
	return false
}

// paramKey is the key of a URL query parameter, unescaped as libpq does.
func paramKey(p string) string {
	k, _, _ := strings.Cut(p, "=")
	if uk, err := url.QueryUnescape(k); err == nil {
		return uk
	}
	return k
}

// connParam is a setting of a keyword/value connection string: its
// keyword, and the span of its value as written (quotes included).
type connParam struct {
	key      string
	from, to int
}

// conninfoParams reads a keyword/value connection string as libpq's
// conninfo_parse does: a keyword runs to '=' (spaces may surround it),
// a value is single-quoted (backslash escapes; the next keyword may
// follow the closing quote at once) or runs to the next space (backslash
// escapes too). It stops at what libpq would refuse.
func conninfoParams(s string) []connParam {
	var out []connParam
	i := 0
	space := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	for {
		for i < len(s) && space(s[i]) {
			i++
		}
		if i == len(s) {
			return out
		}
		start := i
		for i < len(s) && s[i] != '=' && !space(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && space(s[i]) {
			i++
		}
		if i == len(s) || s[i] != '=' {
			return out
		}
		i++
		for i < len(s) && space(s[i]) {
			i++
		}
		from := i
		if i < len(s) && s[i] == '\'' {
			i++
			for i < len(s) && s[i] != '\'' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i = min(i+1, len(s)) // past the closing quote (or the end: unterminated)
		} else {
			for i < len(s) && !space(s[i]) {
				if s[i] == '\\' {
					i++
				}
				i = min(i+1, len(s))
			}
		}
		out = append(out, connParam{key: key, from: from, to: min(i, len(s))})
	}
}

// RedactDSN returns s with any password it carries as a connection
// string, in either of libpq's forms (URL user info or parameter, or a
// password or sslpassword setting), replaced by "xxxxx": what may be
// written down (an audit record of a command refused for that password).
// Anything else is returned as it is.
func RedactDSN(s string) string {
	if u, ok := splitURL(s); ok {
		// By hand rather than with url.Parse, which refuses some strings
		// (a bad port, a '/' in the password) that still carry a password.
		rest := u.rest
		if at := u.userInfoEnd(); at >= 0 {
			if user, _, ok := strings.Cut(rest[:at], ":"); ok {
				rest = user + ":xxxxx" + rest[at:]
			}
		}
		if !u.query {
			return u.scheme + "://" + rest
		}
		params := make([]string, len(u.params))
		for i, p := range u.params {
			params[i] = p
			if secretParam(paramKey(p)) {
				k, _, _ := strings.Cut(p, "=")
				params[i] = k + "=xxxxx"
			}
		}
		return u.scheme + "://" + rest + "?" + strings.Join(params, "&")
	}
	if scheme, _, ok := strings.Cut(s, "://"); ok && !strings.ContainsAny(scheme, " =") {
		return s // another kind of URL (s3://...): no connection string
	}
	var b strings.Builder
	last := 0
	for _, p := range conninfoParams(s) {
		if secretParam(p.key) {
			b.WriteString(s[last:p.from])
			b.WriteString("xxxxx")
			last = p.to
		}
	}
	b.WriteString(s[last:])
	return b.String()
}
