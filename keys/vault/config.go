package vault

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Defaults for the fields of Config left empty.
const (
	DefaultMount     = "transit"
	DefaultKeyPrefix = "tencrypt-"
	DefaultTimeout   = 10 * time.Second
)

// Config says how to reach Vault and where tencrypt's keys live in it.
// Empty fields take the environment (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT)
// and then the defaults above. TLS verification is never turned off by the
// environment, only by TLSSkipVerify here.
type Config struct {
	// Addr is Vault's URL, e.g. https://vault.example:8200.
	Addr string `json:"addr,omitempty" yaml:"addr,omitempty"`
	// Token is a Vault token. Like the local keyring's passphrase it is
	// never read from or written to a configuration file: it comes from
	// TokenFile, VAULT_TOKEN, or the caller.
	Token string `json:"-" yaml:"-"`
	// TokenFile is a file holding the token (surrounding space ignored).
	TokenFile string `json:"token_file,omitempty" yaml:"token_file,omitempty"`
	// Mount is the path of the transit secrets engine (default "transit").
	Mount string `json:"mount,omitempty" yaml:"mount,omitempty"`
	// KeyPrefix is put before a tenant's name to name its transit key
	// (default "tencrypt-", so tenant blue uses key tencrypt-blue).
	KeyPrefix string `json:"key_prefix,omitempty" yaml:"key_prefix,omitempty"`
	// CACert is a PEM file of CA certificates that Vault's TLS certificate
	// must chain to; the system roots are used when it is empty.
	CACert string `json:"ca_cert,omitempty" yaml:"ca_cert,omitempty"`
	// TLSSkipVerify turns off TLS certificate verification: for a lab only.
	TLSSkipVerify bool `json:"tls_skip_verify,omitempty" yaml:"tls_skip_verify,omitempty" tencrypt:"file-only"`
	// Timeout bounds each request to Vault, e.g. "10s" (default 10s).
	Timeout string `json:"timeout,omitempty" yaml:"timeout,omitempty"`
}

// resolved is a Config with the environment and defaults applied and every
// field checked.
type resolved struct {
	addr          string
	token         string
	mount         string
	keyPrefix     string
	caCert        string
	tlsSkipVerify bool
	timeout       time.Duration
}

// ErrConfig marks a Config that cannot be used; the message says which field.
var ErrConfig = errors.New("invalid vault configuration")

var (
	mountRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$`)
	// A transit key name is \w([\w.-]*\w)?; tenants start and end with
	// [a-z0-9], so the prefix only has to start with a word character.
	prefixRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
)

// resolve applies the environment (getenv, normally os.Getenv) and defaults.
func (c Config) resolve(getenv func(string) string) (resolved, error) {
	r := resolved{
		addr:          c.Addr,
		token:         strings.TrimSpace(c.Token),
		mount:         strings.Trim(c.Mount, "/"),
		keyPrefix:     DefaultKeyPrefix,
		caCert:        c.CACert,
		tlsSkipVerify: c.TLSSkipVerify,
	}
	if r.addr == "" {
		r.addr = getenv("VAULT_ADDR")
	}
	if r.addr == "" {
		return r, fmt.Errorf("%w: no Vault address: set vault.addr in the config or VAULT_ADDR", ErrConfig)
	}
	u, err := url.Parse(r.addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return r, fmt.Errorf("%w: Vault address %q: want http(s)://host:port", ErrConfig, r.addr)
	}
	if r.token == "" && c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return r, fmt.Errorf("%w: reading the Vault token file: %w", ErrConfig, err)
		}
		r.token = strings.TrimSpace(string(b))
		if r.token == "" {
			return r, fmt.Errorf("%w: Vault token file %s is empty", ErrConfig, c.TokenFile)
		}
	}
	if r.token == "" {
		r.token = strings.TrimSpace(getenv("VAULT_TOKEN"))
	}
	if r.token == "" {
		return r, fmt.Errorf("%w: no Vault token: set vault.token_file in the config or VAULT_TOKEN", ErrConfig)
	}
	if r.mount == "" {
		r.mount = DefaultMount
	}
	if !mountRE.MatchString(r.mount) || slices.ContainsFunc(strings.Split(r.mount, "/"), func(s string) bool { return strings.Trim(s, ".") == "" }) {
		return r, fmt.Errorf("%w: transit mount %q: want a path such as transit or tenants/transit", ErrConfig, c.Mount)
	}
	if c.KeyPrefix != "" {
		r.keyPrefix = c.KeyPrefix
	}
	if !prefixRE.MatchString(r.keyPrefix) {
		return r, fmt.Errorf("%w: key prefix %q: use letters, digits, '_', '-' and '.', starting with a letter, digit or '_'", ErrConfig, r.keyPrefix)
	}
	if r.caCert == "" {
		r.caCert = getenv("VAULT_CACERT")
	}
	r.timeout = DefaultTimeout
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return r, fmt.Errorf("%w: timeout %q: want a positive duration such as 10s or 1m", ErrConfig, c.Timeout)
		}
		r.timeout = d
	}
	return r, nil
}
