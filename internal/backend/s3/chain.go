package s3

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// defaultChain returns the first source of credentials that lookup's
// environment configures, in the order of the AWS tools:
//
//  1. the AWS variables (envCreds);
//  2. profile AWS_PROFILE (else "default") of the shared credentials file
//     (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials), then of the
//     config file (AWS_CONFIG_FILE, else ~/.aws/config): its keys, or its
//     credential_process; ~ is HOME as lookup finds it (homeDir);
//  3. a web identity token exchanged at STS for a role's credentials
//     (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN: EKS service accounts);
//  4. a container's credentials endpoint
//     (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN or _FILE: ECS, EKS Pod Identity);
//  5. the EC2 instance's role (IMDS), unless AWS_EC2_METADATA_DISABLED is
//     true.
//
// The links are the SDK's credential providers. The SDK's own chain
// (config.LoadDefaultConfig) is not used: with its SSO and sign-in clients
// its packages cost about 2.5 ms of initialization in every nestguard
// process, more than the whole S3 client, and nestguard has no use for
// its other settings.
func defaultChain(lookup func(string) (string, bool), region string) (aws.CredentialsProvider, error) {
	env := func(k string) string { v, _ := lookup(k); return v }
	if c := envCreds(lookup); c != nil {
		return c, nil
	}
	if c, err := profileCreds(env); err != nil || c != nil {
		return c, err
	}
	if file, role := env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN"); file != "" && role != "" {
		if r := env("AWS_REGION"); r != "" {
			region = r
		}
		if region == "" {
			region = defaultRegion
		}
		client := sts.New(sts.Options{Region: region})
		return stscreds.NewWebIdentityRoleProvider(client, role, stscreds.IdentityTokenFile(file), func(o *stscreds.WebIdentityRoleOptions) {
			o.RoleSessionName = env("AWS_ROLE_SESSION_NAME")
		}), nil
	}
	endpoint := env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
	if rel := env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		endpoint = "http://169.254.170.2" + rel
	}
	if endpoint != "" {
		return endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
			o.AuthorizationToken = env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
			if file := env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); file != "" {
				o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
					b, err := os.ReadFile(file)
					return strings.TrimSpace(string(b)), err
				})
			}
		}), nil
	}
	if strings.EqualFold(env("AWS_EC2_METADATA_DISABLED"), "true") {
		return nil, nil
	}
	return ec2rolecreds.New(), nil
}

// profileCreds returns the credentials of the profile that env names in
// the shared credentials or config file, nil if neither has any.
func profileCreds(env func(string) string) (aws.CredentialsProvider, error) {
	profile := env("AWS_PROFILE")
	if profile == "" {
		profile = "default"
	}
	home := homeDir(env)
	credsFile := env("AWS_SHARED_CREDENTIALS_FILE")
	if credsFile == "" && home != "" {
		credsFile = filepath.Join(home, ".aws", "credentials")
	}
	configFile := env("AWS_CONFIG_FILE")
	if configFile == "" && home != "" {
		configFile = filepath.Join(home, ".aws", "config")
	}
	section := "profile " + profile
	if profile == "default" {
		section = "default"
	}
	for _, f := range []struct{ file, section string }{{credsFile, profile}, {configFile, section}} {
		if f.file == "" {
			continue
		}
		keys, err := iniSection(f.file, f.section)
		if err != nil {
			return nil, fmt.Errorf("reading profile %q: %w", profile, err)
		}
		id, secret := keys["aws_access_key_id"], keys["aws_secret_access_key"]
		switch {
		case id != "" && secret != "":
			return credentials.NewStaticCredentialsProvider(id, secret, keys["aws_session_token"]), nil
		case keys["credential_process"] != "":
			return processcreds.NewProvider(keys["credential_process"]), nil
		}
	}
	return nil, nil
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

// iniSection returns the keys (lower case) and values of section in the
// INI file, nil if the file or the section does not exist.
func iniSection(file, section string) (map[string]string, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var keys map[string]string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && strings.HasSuffix(line, "]"):
			in = strings.Join(strings.Fields(line[1:len(line)-1]), " ") == section
		case in:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			if keys == nil {
				keys = make(map[string]string)
			}
			keys[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	return keys, nil
}
