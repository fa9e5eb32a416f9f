package s3

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// chain builds the credential chain from what a Config and its
// environment say.
type chain struct {
	lookup func(string) (string, bool)
	region string // the S3 region given, if any
	caCert string // the CA bundle the S3 endpoint is reached with, if any
	// profile is Config.Profile: the one profile credentials come from
	// ("" for the whole chain), and origin where it was given.
	profile, origin string
}

func (c chain) env(k string) string { v, _ := c.lookup(k); return v }

// defaultChain returns the first source of credentials that cfg's
// environment configures, in the order of the AWS tools, and what it is,
// for messages (see who):
//
//  1. the AWS variables (envCreds);
//  2. profile AWS_PROFILE (else "default") of the shared credentials file
//     (AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials) and the
//     config file (AWS_CONFIG_FILE, else ~/.aws/config): its keys, its
//     credential_process, or a role it assumes (role_arn with
//     source_profile or credential_source; see profileCreds); ~ is HOME
//     as the lookup finds it (homeDir);
//  3. a web identity token exchanged at STS for a role's credentials
//     (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN: EKS service accounts);
//  4. a container's credentials endpoint
//     (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI, with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN or _FILE: ECS, EKS Pod Identity);
//  5. the EC2 instance's role (IMDS), unless AWS_EC2_METADATA_DISABLED is
//     true.
//
// With cfg.Profile set, that profile is the only source, as the AWS CLI
// takes --profile (and the SDK a profile set in code): the AWS variables
// and AWS_PROFILE are not read, and a profile that does not exist, has
// one key of its pair, or configures no credentials is an error, never a
// turn to the next source. Two repositories (copy's source and
// destination) can so each have their own, whatever the environment
// holds.
//
// The links are the SDK's credential providers. The SDK's own chain
// (config.LoadDefaultConfig) is not used: with its SSO and sign-in clients
// its packages cost about 2.5 ms of initialization in every nestguard
// process, more than the whole S3 client, and nestguard has no use for
// its other settings. SSO profiles are refused with what to do instead.
func defaultChain(ctx context.Context, cfg Config) (aws.CredentialsProvider, string, error) {
	c := chain{lookup: cfg.lookupEnv(), region: cfg.Region, caCert: cfg.CACertFile, profile: cfg.Profile, origin: cfg.ProfileOrigin}
	if c.profile != "" {
		p, err := c.profileCreds(ctx)
		who := c.who(c.profile)
		switch {
		case err != nil:
			return nil, "", err
		case p == nil:
			return nil, "", fmt.Errorf("%s has no credentials: give it aws_access_key_id and aws_secret_access_key, a credential_process, or a role_arn with source_profile or credential_source", who)
		}
		return p, who, nil
	}
	if p := envCreds(c.lookup); p != nil {
		return p, "the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY variables", nil
	}
	if p, err := c.profileCreds(ctx); err != nil || p != nil {
		name, _ := c.profileName()
		return p, c.who(name), err
	}
	if file, role := c.env("AWS_WEB_IDENTITY_TOKEN_FILE"), c.env("AWS_ROLE_ARN"); file != "" && role != "" {
		client, err := c.stsClient(ctx, "", nil)
		if err != nil {
			return nil, "", err
		}
		return stscreds.NewWebIdentityRoleProvider(client, role, stscreds.IdentityTokenFile(file), func(o *stscreds.WebIdentityRoleOptions) {
			o.RoleSessionName = c.env("AWS_ROLE_SESSION_NAME")
		}), "web identity role " + role, nil
	}
	if p := c.containerCreds(); p != nil {
		return p, "the container's credentials", nil
	}
	if strings.EqualFold(c.env("AWS_EC2_METADATA_DISABLED"), "true") {
		return nil, "", nil
	}
	return ec2rolecreds.New(), "the EC2 instance's role", nil
}

// profileName returns the profile the chain reads and where it was
// chosen: Config.Profile (its origin), else AWS_PROFILE, else "default"
// (origin "").
func (c chain) profileName() (name, origin string) {
	if c.profile != "" {
		if c.origin == "" {
			return c.profile, "the S3 profile setting"
		}
		return c.profile, c.origin
	}
	if name := c.env("AWS_PROFILE"); name != "" {
		return name, "AWS_PROFILE"
	}
	return "default", ""
}

// who names profile name's credentials for messages: profile "x" and
// where it was chosen (a flag, AWS_PROFILE).
func (c chain) who(name string) string {
	if _, origin := c.profileName(); origin != "" {
		return fmt.Sprintf("profile %q (%s)", name, origin)
	}
	return fmt.Sprintf("profile %q", name)
}

// containerCreds returns the provider of a container's credentials
// endpoint, nil if the environment names none.
func (c chain) containerCreds() aws.CredentialsProvider {
	endpoint := c.env("AWS_CONTAINER_CREDENTIALS_FULL_URI")
	if rel := c.env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"); rel != "" {
		endpoint = "http://169.254.170.2" + rel
	}
	if endpoint == "" {
		return nil
	}
	return endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.AuthorizationToken = c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN")
		if file := c.env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); file != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(file)
				return strings.TrimSpace(string(b)), err
			})
		}
	})
}

// stsClient returns an STS client for exchanging credentials (creds; nil
// for an unsigned web identity exchange) for a role's. Its region is AWS_REGION, else profileRegion (the role
// profile's region), else the S3 region given, else us-east-1. Its
// endpoint is the SDK's for the region unless AWS_ENDPOINT_URL_STS (else
// AWS_ENDPOINT_URL) names one, as the AWS tools take it, and
// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is not true. It is reached as the
// S3 endpoint is (see transport): TLS 1.3, the CA bundle if one is given,
// plain HTTP only to a loopback address.
func (c chain) stsClient(ctx context.Context, profileRegion string, creds aws.CredentialsProvider) (*sts.Client, error) {
	opts := sts.Options{Region: defaultRegion, Credentials: creds}
	for _, r := range []string{c.env("AWS_REGION"), profileRegion, c.region} {
		if r != "" {
			opts.Region = r
			break
		}
	}
	tcfg := Config{Secure: true, CACertFile: c.caCert}
	if !strings.EqualFold(c.env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"), "true") {
		endpoint, from := c.env("AWS_ENDPOINT_URL_STS"), "AWS_ENDPOINT_URL_STS"
		if endpoint == "" {
			endpoint, from = c.env("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL"
		}
		if endpoint != "" {
			host, secure, err := ParseEndpoint(endpoint, false)
			if err != nil {
				return nil, fmt.Errorf("the STS endpoint (%s): %w", from, err)
			}
			scheme := "https://"
			if !secure {
				scheme = "http://"
			}
			opts.BaseEndpoint = aws.String(scheme + host)
			tcfg.Endpoint, tcfg.Secure = host, secure
		}
	}
	tr, err := transport(ctx, tcfg)
	if err != nil {
		return nil, fmt.Errorf("the STS endpoint: %w", err)
	}
	opts.HTTPClient = &http.Client{Transport: tr}
	return sts.New(opts), nil
}
