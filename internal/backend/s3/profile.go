package s3

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
)

// sharedFiles are the AWS shared credentials and config files, read once.
type sharedFiles struct {
	credsFile, configFile string
	creds, config         map[string]map[string]string // section -> key (lower case) -> value
}

func readSharedFiles(c chain) (*sharedFiles, error) {
	home := homeDir(c.env)
	f := &sharedFiles{credsFile: c.env("AWS_SHARED_CREDENTIALS_FILE"), configFile: c.env("AWS_CONFIG_FILE")}
	if f.credsFile == "" && home != "" {
		f.credsFile = filepath.Join(home, ".aws", "credentials")
	}
	if f.configFile == "" && home != "" {
		f.configFile = filepath.Join(home, ".aws", "config")
	}
	var err error
	if f.creds, err = iniFile(f.credsFile); err != nil {
		return nil, err
	}
	if f.config, err = iniFile(f.configFile); err != nil {
		return nil, err
	}
	return f, nil
}

// profile returns the settings of profile name: its section of the
// config file ([profile name], or [default]) overridden by its section of
// the credentials file ([name]); nil if neither file has it.
func (f *sharedFiles) profile(name string) map[string]string {
	conf := f.config["profile "+name]
	if conf == nil && name == "default" {
		conf = f.config["default"]
	}
	creds := f.creds[name]
	if conf == nil && creds == nil {
		return nil
	}
	out := make(map[string]string, len(conf)+len(creds))
	for k, v := range conf {
		out[k] = v
	}
	for k, v := range creds {
		out[k] = v
	}
	return out
}

// where names the files a profile is looked for in, for messages.
func (f *sharedFiles) where() string {
	return fmt.Sprintf("%s or %s", f.credsFile, f.configFile)
}

// profileCreds returns the credentials of profile Config.Profile, else
// AWS_PROFILE, else "default" of the shared files (see profileName), nil
// if it has none (or, for "default" when neither names a profile, does
// not exist: a profile named that does not exist is an error), with the
// precedence of the AWS tools:
//
//   - role_arn with source_profile or credential_source: the role,
//     assumed at STS (see stsClient) with the source's credentials, with
//     the profile's external_id, role_session_name and duration_seconds.
//     A source profile gives its keys if it has any (also a profile that
//     names itself as its source), else the role or credential_process
//     it configures in turn; a profile met a second time on the way gives
//     only its own keys or credential_process, so a loop of source
//     profiles is an error, not an endless chain. credential_source is
//     Environment, Ec2InstanceMetadata or EcsContainer;
//   - aws_access_key_id and aws_secret_access_key (and aws_session_token);
//   - credential_process.
//
// SSO profiles (sso_session, sso_start_url, ...) and mfa_serial are
// refused with what to do instead: nestguard runs unattended, and the SSO
// clients cost every process start (see defaultChain).
func (c chain) profileCreds(ctx context.Context) (aws.CredentialsProvider, error) {
	name, origin := c.profileName()
	files, err := readSharedFiles(c)
	if err != nil {
		return nil, fmt.Errorf("reading profile %q: %w", name, err)
	}
	if files.profile(name) == nil {
		// As the AWS tools: a profile asked for by name that does not
		// exist is an error, not a silent turn to other credentials (an
		// instance role, say) with other rights.
		switch origin {
		case "":
			return nil, nil
		case "AWS_PROFILE":
			return nil, fmt.Errorf("AWS_PROFILE=%s: no such profile in %s: correct the name, or unset AWS_PROFILE to use the default credentials", name, files.where())
		}
		return nil, fmt.Errorf("%s: no such profile in %s (a [%s] section of the first, or [profile %s] of the second): correct the name", c.who(name), files.where(), name, name)
	}
	r := resolver{chain: c, files: files}
	p, err := r.resolve(ctx, name, nil)
	if err != nil {
		return nil, fmt.Errorf("profile %q (%s): %w", name, files.where(), err)
	}
	return p, nil
}

// resolver follows a profile's sources.
type resolver struct {
	chain
	files *sharedFiles
}

// resolve returns the credentials of profile name, reached through the
// source profiles in path (nil at the top). Nil without error means the
// top profile configures no credentials.
func (r resolver) resolve(ctx context.Context, name string, path []string) (aws.CredentialsProvider, error) {
	p := r.files.profile(name)
	top := path == nil
	if p == nil {
		return nil, fmt.Errorf("source_profile %q (of profile %q) does not exist", name, path[len(path)-1])
	}
	if err := unsupported(name, p); err != nil {
		return nil, err
	}
	if err := partialKeys(name, p); err != nil {
		return nil, err
	}
	again := false
	for _, seen := range path {
		again = again || seen == name
	}
	path = append(path, name)
	static := func() aws.CredentialsProvider {
		if id, secret := p["aws_access_key_id"], p["aws_secret_access_key"]; id != "" && secret != "" {
			return credentials.NewStaticCredentialsProvider(id, secret, p["aws_session_token"])
		}
		return nil
	}
	if s := static(); s != nil && !top {
		return s, nil // a source profile's keys, as the AWS tools use them
	}
	if role := p["role_arn"]; role != "" && !again {
		var src aws.CredentialsProvider
		var err error
		switch srcName, credSrc := p["source_profile"], p["credential_source"]; {
		case srcName != "" && credSrc != "":
			return nil, fmt.Errorf("profile %q sets both source_profile and credential_source: give one", name)
		case srcName == name && static() != nil:
			src = static() // a profile that names itself: its own keys
		case srcName != "":
			src, err = r.resolve(ctx, srcName, path)
		case credSrc != "":
			src, err = r.credentialSource(name, credSrc)
		default:
			return nil, fmt.Errorf("profile %q has role_arn but neither source_profile nor credential_source: add the profile whose credentials assume the role (source_profile = name)", name)
		}
		if err != nil {
			return nil, err
		}
		return r.assumeRole(ctx, name, p, src)
	}
	if p["role_arn"] == "" && (p["source_profile"] != "" || p["credential_source"] != "") {
		return nil, fmt.Errorf("profile %q has source_profile or credential_source but no role_arn: add the role to assume", name)
	}
	if s := static(); s != nil {
		return s, nil
	}
	if cmd := p["credential_process"]; cmd != "" {
		return processCreds{processcreds.NewProvider(cmd), name}, nil
	}
	switch {
	case again:
		return nil, fmt.Errorf("source_profile loop %s: profile %q is met again and has no credentials of its own (keys or credential_process)", strings.Join(path, " -> "), name)
	case top:
		return nil, nil
	}
	return nil, fmt.Errorf("source_profile %q (of profile %q) has no credentials: give it aws_access_key_id and aws_secret_access_key, a credential_process, or a role_arn with its own source", name, path[len(path)-2])
}

// unsupported refuses the profile settings nestguard cannot honour, with
// what to do instead.
func unsupported(name string, p map[string]string) error {
	for _, k := range []string{"sso_session", "sso_start_url", "sso_account_id", "sso_role_name", "sso_region"} {
		if p[k] != "" {
			return fmt.Errorf("profile %q uses AWS IAM Identity Center (%s), which nestguard does not support: after 'aws sso login', export the credentials with 'aws configure export-credentials --profile %s --format env', or give nestguard a profile with 'credential_process = aws configure export-credentials --profile %s --format process'", name, k, name, name)
		}
	}
	if p["mfa_serial"] != "" {
		return fmt.Errorf("profile %q asks for an MFA code (mfa_serial), which nestguard, running unattended, cannot give: use a role without MFA for backups, or export temporary credentials (aws sts assume-role ... --serial-number ... --token-code ...) into AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN", name)
	}
	if p["web_identity_token_file"] != "" {
		return fmt.Errorf("profile %q uses web_identity_token_file, which nestguard reads only from the environment: set AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN instead", name)
	}
	return nil
}

// partialKeys refuses a profile with one of its key pair and not the
// other (a misspelt key name, a line lost in an edit), as the AWS tools
// do ("partial credentials found"): taking it for a profile without keys
// would turn to the next source, an instance role with other rights,
// say. A profile that assumes a role is not read for keys.
func partialKeys(name string, p map[string]string) error {
	if p["role_arn"] != "" {
		return nil
	}
	const id, secret = "aws_access_key_id", "aws_secret_access_key"
	has, lacks := id, secret
	switch {
	case p[id] != "" && p[secret] != "", p[id] == "" && p[secret] == "":
		return nil
	case p[id] == "":
		has, lacks = secret, id
	}
	// The values are not repeated: one of them is a secret.
	return fmt.Errorf("profile %q has partial credentials: %s is set, %s is missing (is its name misspelt?): give both", name, has, lacks)
}

// credentialSource returns the credentials that credential_source src of
// profile name names.
func (r resolver) credentialSource(name, src string) (aws.CredentialsProvider, error) {
	switch src {
	case "Environment":
		if p := envCreds(r.lookup); p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("profile %q: credential_source Environment, and AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set", name)
	case "Ec2InstanceMetadata":
		return ec2rolecreds.New(), nil
	case "EcsContainer":
		if p := r.containerCreds(); p != nil {
			return p, nil
		}
		return nil, fmt.Errorf("profile %q: credential_source EcsContainer, and neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor _FULL_URI is set", name)
	}
	return nil, fmt.Errorf("profile %q: unknown credential_source %q (want Environment, Ec2InstanceMetadata or EcsContainer)", name, src)
}

// assumeRole returns the credentials of the role of profile p (name),
// assumed with src's.
func (r resolver) assumeRole(ctx context.Context, name string, p map[string]string, src aws.CredentialsProvider) (aws.CredentialsProvider, error) {
	var d time.Duration
	if s := p["duration_seconds"]; s != "" {
		n, err := strconv.Atoi(s)
		// STS takes 900 s to the role's maximum, at most 12 hours.
		if err != nil || n < 900 || n > 43200 {
			return nil, fmt.Errorf("profile %q: duration_seconds %q is not a number of seconds from 900 to 43200", name, s)
		}
		d = time.Duration(n) * time.Second
	}
	if _, ok := src.(*aws.CredentialsCache); !ok {
		src = aws.NewCredentialsCache(src)
	}
	client, err := r.stsClient(ctx, p["region"], src)
	if err != nil {
		return nil, fmt.Errorf("profile %q: %w", name, err)
	}
	what := fmt.Sprintf("assuming role %s of profile %q at STS", p["role_arn"], name)
	return namedProvider{what: what, p: stscreds.NewAssumeRoleProvider(client, p["role_arn"], func(o *stscreds.AssumeRoleOptions) {
		o.Duration = d
		if id := p["external_id"]; id != "" {
			o.ExternalID = aws.String(id)
		}
		o.RoleSessionName = p["role_session_name"]
		if o.RoleSessionName == "" {
			// What CloudTrail shows; the SDK's default says aws-go-sdk.
			o.RoleSessionName = fmt.Sprintf("nestguard-%d", time.Now().Unix())
		}
	})}, nil
}

// namedProvider says which link of the chain failed.
type namedProvider struct {
	what string
	p    aws.CredentialsProvider
}

func (n namedProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	v, err := n.p.Retrieve(ctx)
	if err != nil {
		return v, fmt.Errorf("%s: %w", n.what, err)
	}
	return v, nil
}

// homeDir is the directory whose .aws holds the shared files: HOME
// (USERPROFILE on Windows) as env finds it, like every other setting of
// the chain, else the account's home directory, as the SDK falls back to;
// "" if neither is known.
func homeDir(env func(string) string) string {
	key := "HOME"
	switch runtime.GOOS {
	case "windows":
		key = "USERPROFILE"
	case "plan9":
		key = "home"
	}
	if h := env(key); h != "" {
		return h
	}
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return ""
}

// iniFile returns the sections of the INI file (names with their inner
// spaces made single), each with its keys (lower case) and values; nil if
// file is "" or does not exist.
func iniFile(file string) (map[string]map[string]string, error) {
	if file == "" {
		return nil, nil
	}
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sections := make(map[string]map[string]string)
	var cur map[string]string
	nested := false // in the indented sub-keys of a key without a value
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if nested && line != "" && (raw[0] == ' ' || raw[0] == '\t') {
			continue // such as "s3 =" and its settings: none is a credential
		}
		nested = false
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && strings.HasSuffix(line, "]"):
			name := strings.Join(strings.Fields(line[1:len(line)-1]), " ")
			if cur = sections[name]; cur == nil {
				cur = make(map[string]string)
				sections[name] = cur
			}
		case cur != nil:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			v = strings.TrimSpace(v)
			cur[strings.ToLower(strings.TrimSpace(k))] = v
			nested = v == ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return sections, nil
}

// processCreds is a profile's credential_process whose errors never carry
// the process's output: the SDK's error for output it cannot parse quotes
// it whole, the secret access key and session token included (found by a
// hostile test: a helper printing its Expiration in another format put
// its valid secret in nestguard's error).
type processCreds struct {
	p       *processcreds.Provider
	profile string
}

func (c processCreds) Retrieve(ctx context.Context) (aws.Credentials, error) {
	v, err := c.p.Retrieve(ctx)
	if err != nil {
		return aws.Credentials{}, scrubProcessError(c.profile, err)
	}
	return v, nil
}

// scrubProcessError returns err, or for output that did not parse an
// error that says why without quoting it.
func scrubProcessError(profile string, err error) error {
	var pe *processcreds.ProviderError
	if !errors.As(err, &pe) || !strings.Contains(pe.Error(), "parse failed of process output") {
		return err // the SDK's other errors name no output
	}
	why := "it is not JSON"
	var (
		te *json.UnmarshalTypeError
		se *json.SyntaxError
		pt *time.ParseError
	)
	switch {
	case errors.As(err, &pt):
		why = fmt.Sprintf("its Expiration %q is not an RFC 3339 time", pt.Value)
	case errors.As(err, &te):
		why = fmt.Sprintf("its field %s is not a %s", te.Field, te.Type)
	case errors.As(err, &se):
		why = fmt.Sprintf("it is not valid JSON (at byte %d)", se.Offset)
	}
	return fmt.Errorf("the credential_process of profile %q printed output the AWS tools do not take: %s (want JSON with Version 1, AccessKeyId, SecretAccessKey, and optionally SessionToken and an RFC 3339 Expiration; the output is not shown, as it holds secrets)", profile, why)
}
