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

// errDSNSSLPassword refuses a connection string that carries the
// passphrase of the client's SSL key, for which no password file exists.
var errDSNSSLPassword = errors.New("the PostgreSQL connection string holds sslpassword, the passphrase of the client's SSL key, which would be visible in the process list, shell history and config files: " +
	"use a client key without a passphrase, readable only by its user, or put the setting in a connection service file (PGSERVICEFILE, mode 0600) and name the service")

// secretError is the refusal of a connection string that sets key, or
// nil when key is no secret.
func secretError(key string) error {
	switch key {
	case "password":
		return errDSNPassword
	case "sslpassword":
		return errDSNSSLPassword
	}
	return nil
}

// CheckDSN refuses a connection string, in either of libpq's forms, that
// carries a secret: a password in a URL's user info or a parameter, or a
// password or sslpassword setting. It reads the string as libpq does,
// not as a stricter parser would (a URL that net/url refuses, a bad port
// or escape; a setting right after a quoted value, host='h'password=x;
// a '?' in a URL's user info: hostile test and review), and refuses too
// what a lenient reading of a string libpq would reject finds, since
// such a string is still written down (a configuration, a report).
func CheckDSN(dsn string) error {
	if u, ok := splitURL(dsn); ok {
		if strings.Contains(u.user, ":") {
			return errDSNPassword
		}
		for _, p := range u.params {
			if err := secretError(paramKey(p)); err != nil {
				return err
			}
		}
	} else {
		for _, p := range conninfoParams(dsn) {
			if err := secretError(p.key); err != nil {
				return err
			}
		}
	}
	if RedactDSN(dsn) != dsn {
		return errDSNPassword
	}
	return nil
}

// connURL is a connection URI cut as libpq cuts it, by hand: the scheme,
// the user info (up to the first '@' before any '/'), what comes after it
// up to the query (hosts, database), and the query's parameters.
type connURL struct {
	scheme, user, rest string
	params             []string // "key=value", as written
}

// splitURL cuts s if it is a connection URI (postgres:// or
// postgresql://).
func splitURL(s string) (connURL, bool) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme != "postgres" && scheme != "postgresql" {
		return connURL{}, false
	}
	u := connURL{scheme: scheme}
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		u.user, rest = rest[:i], rest[i+1:]
	}
	var query string
	var hasQuery bool
	u.rest, query, hasQuery = strings.Cut(rest, "?")
	if hasQuery {
		u.params = strings.Split(query, "&")
	}
	return u, true
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

// RedactDSN returns s with any secret it carries as a connection string,
// in either of libpq's forms (URL user info or parameter, or a password
// or sslpassword setting), replaced by "xxxxx": what may be written down
// (an audit record of a command refused for it). It is lenient where
// CheckDSN is exact: it also redacts what a string libpq would refuse
// seems to carry (a setting after one without '=', a '/' in a URL's
// password), at the cost of redacting a little more than the secret
// in odd strings. Anything else is returned as it is.
func RedactDSN(s string) string {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if scheme != "postgres" && scheme != "postgresql" {
			return s // another kind of URL (s3://...): no connection string
		}
		// By hand rather than with url.Parse, which refuses some strings
		// (a bad port, a '/' in the password) that still carry one.
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if user, _, ok := strings.Cut(rest[:at], ":"); ok {
				rest = user + ":xxxxx" + rest[at:]
			}
		}
		// The query's parameters by the key CheckDSN reads (unescaped:
		// pass%77ord is password to libpq), then any that look like one.
		if head, query, ok := strings.Cut(rest, "?"); ok {
			params := strings.Split(query, "&")
			for i, p := range params {
				if secretError(paramKey(p)) != nil {
					k, _, _ := strings.Cut(p, "=")
					params[i] = k + "=xxxxx"
				}
			}
			rest = head + "?" + strings.Join(params, "&")
		}
		return scheme + "://" + urlSecretParam.ReplaceAllString(rest, "${1}xxxxx")
	}
	var b strings.Builder
	last := 0
	for _, p := range conninfoParams(s) {
		if secretError(p.key) != nil {
			b.WriteString(s[last:p.from])
			b.WriteString("xxxxx")
			last = p.to
		}
	}
	b.WriteString(s[last:])
	return secretValue.ReplaceAllString(b.String(), "${1}xxxxx")
}

// secretValue matches a password or sslpassword setting of a
// keyword/value string with its value (single-quoted, with \' and \\
// escapes, or a run of non-space characters), wherever a keyword may
// start: RedactDSN's lenient pass after the exact one.
var secretValue = regexp.MustCompile(`((?:^|[\s'])(?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s']*)`)

// urlSecretParam matches a password or sslpassword parameter of a URL
// with its value.
var urlSecretParam = regexp.MustCompile(`([?&](?:ssl)?password=)[^&]*`)
