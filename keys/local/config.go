package local

import (
	"errors"
	"fmt"
)

// Config opens a local keyring. Exactly one way of unlocking is set: for
// admin use KeyFile, PassphraseFile or Passphrase; for one tenant's
// data-plane use Tenant and TenantKeyFile.
type Config struct {
	// Path is the keyring file.
	Path string `json:"path,omitempty" yaml:"path,omitempty"`
	// KeyFile holds the 32-byte admin key (raw, or 64 hex digits and a
	// newline), for keyrings created with a key file.
	KeyFile string `json:"key_file,omitempty" yaml:"key_file,omitempty"`
	// PassphraseFile holds the admin passphrase (its first line), for
	// keyrings created with a passphrase.
	PassphraseFile string `json:"passphrase_file,omitempty" yaml:"passphrase_file,omitempty"`
	// Passphrase is the admin passphrase itself. It is never read from or
	// written to a configuration file; the CLI fills it from
	// TENCRYPT_LOCAL_PASSPHRASE or a terminal prompt. Open zeroes it.
	Passphrase []byte `json:"-" yaml:"-"`
	// Tenant and TenantKeyFile open the keyring with one tenant's access
	// key: Wrap and Unwrap for that tenant only.
	Tenant        string `json:"tenant,omitempty" yaml:"tenant,omitempty"`
	TenantKeyFile string `json:"tenant_key_file,omitempty" yaml:"tenant_key_file,omitempty"`
	// AccessKeyDir is where CreateTenant writes each new tenant's access key
	// (<dir>/<tenant>.key, mode 0600). Empty means <Path>.access.
	AccessKeyDir string `json:"access_key_dir,omitempty" yaml:"access_key_dir,omitempty"`
}

// ErrConfig reports an incomplete or contradictory Config.
var ErrConfig = errors.New("local keyring: invalid configuration")

// Validate checks that the configuration names a keyring and exactly one
// way to unlock it.
func (c *Config) Validate() error {
	if c.Path == "" {
		return fmt.Errorf("%w: no keyring path (set local.path, --local-path or TENCRYPT_LOCAL_PATH)", ErrConfig)
	}
	n := 0
	for _, set := range []bool{c.KeyFile != "", c.PassphraseFile != "", len(c.Passphrase) > 0, c.TenantKeyFile != ""} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return fmt.Errorf("%w: no way to unlock %s: set a key file, a passphrase file or a passphrase for admin use, or a tenant and its access key file", ErrConfig, c.Path)
	case n > 1:
		return fmt.Errorf("%w: set only one of key file, passphrase file, passphrase and tenant key file", ErrConfig)
	case c.TenantKeyFile != "" && c.Tenant == "":
		return fmt.Errorf("%w: a tenant key file needs the tenant's name (local.tenant)", ErrConfig)
	case c.TenantKeyFile == "" && c.Tenant != "":
		return fmt.Errorf("%w: tenant %q is set but not its access key file (local.tenant_key_file)", ErrConfig, c.Tenant)
	}
	return nil
}

// AccessKeyPath is where CreateTenant writes tenant's access key.
func (c *Config) AccessKeyPath(tenant string) string {
	dir := c.AccessKeyDir
	if dir == "" {
		dir = c.Path + ".access"
	}
	return dir + "/" + tenant + ".key"
}
