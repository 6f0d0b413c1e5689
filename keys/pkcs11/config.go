package pkcs11

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tencrypt/tencrypt/keys"
)

// Name is the backend's name, as recorded in wrapped keys.
const Name = "pkcs11"

// ErrConfig reports an incomplete or contradictory Config.
var ErrConfig = errors.New("pkcs11: invalid configuration")

// DefaultModule is where Debian's softhsm2 package puts the SoftHSM2 library.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// DefaultTokenPrefix starts the label of every tenant token.
const DefaultTokenPrefix = "tencrypt-"

// DefaultPoolSize is the number of sessions kept open per token.
const DefaultPoolSize = 4

// maxTokenLabel is the size of CK_TOKEN_INFO.label: PKCS#11 labels are 32
// bytes, padded with spaces.
const maxTokenLabel = 32

// Environment variables read by FromEnv, one per Config field.
const (
	EnvModule      = "TENCRYPT_PKCS11_MODULE"
	EnvTokenPrefix = "TENCRYPT_PKCS11_TOKEN_PREFIX"
	EnvTenant      = "TENCRYPT_PKCS11_TENANT"
	EnvPIN         = "TENCRYPT_PKCS11_PIN"
	EnvPINFile     = "TENCRYPT_PKCS11_PIN_FILE"
	EnvPINDir      = "TENCRYPT_PKCS11_PIN_DIR"
	EnvSOPINFile   = "TENCRYPT_PKCS11_SO_PIN_FILE"
	EnvPoolSize    = "TENCRYPT_PKCS11_POOL_SIZE"
)

// Config says which PKCS#11 module to load and which tokens to open with
// which PINs. Each tenant has its own token with its own user PIN (see
// docs/PKCS11.md): the token, not tencrypt, keeps one tenant from another.
//
// Exactly one of two views is configured:
//   - tenant-scoped: Tenant names the one tenant, and PIN or PINFile holds its
//     token's user PIN. Only Wrap, Unwrap, Tenant and Tenants work, and only
//     for that tenant.
//   - admin: PINDir is a directory with one file per tenant, named after the
//     tenant and holding its token's user PIN (a Kubernetes Secret mounted as
//     a volume has this shape). SOPINFile, if set, lets CreateTenant
//     initialise a free token for a new tenant and write its PIN into PINDir.
type Config struct {
	// Module is the path of the PKCS#11 library; default DefaultModule.
	Module string `json:"module,omitempty" yaml:"module,omitempty"`
	// TokenPrefix starts each tenant token's label; default
	// DefaultTokenPrefix. See TokenLabel.
	TokenPrefix string `json:"token_prefix,omitempty" yaml:"token_prefix,omitempty"`
	// Tenant makes the provider tenant-scoped.
	Tenant string `json:"tenant,omitempty" yaml:"tenant,omitempty"`
	// PIN is the tenant token's user PIN. It is never read from or written
	// to a configuration file; the CLI fills it from TENCRYPT_PKCS11_PIN.
	// Prefer PINFile.
	PIN string `json:"-" yaml:"-"`
	// PINFile holds the tenant token's user PIN (one line).
	PINFile string `json:"pin_file,omitempty" yaml:"pin_file,omitempty"`
	// PINDir makes the provider an admin: one PIN file per tenant.
	PINDir string `json:"pin_dir,omitempty" yaml:"pin_dir,omitempty"`
	// SOPINFile holds the security officer PIN that CreateTenant gives to
	// the tokens it initialises. Admin only; optional.
	SOPINFile string `json:"so_pin_file,omitempty" yaml:"so_pin_file,omitempty"`
	// PoolSize is the number of sessions kept per token; default
	// DefaultPoolSize.
	PoolSize int `json:"pool_size,omitempty" yaml:"pool_size,omitempty"`
}

// String shows the configuration without the PIN.
func (c Config) String() string {
	pin := ""
	if c.PIN != "" {
		pin = " pin=<redacted>"
	}
	return fmt.Sprintf("pkcs11{module=%q token_prefix=%q tenant=%q pin_file=%q pin_dir=%q so_pin_file=%q pool_size=%d%s}",
		c.Module, c.TokenPrefix, c.Tenant, c.PINFile, c.PINDir, c.SOPINFile, c.PoolSize, pin)
}

// FromEnv fills every empty field of c from its TENCRYPT_PKCS11_* variable,
// so flags and config files win over the environment.
func (c Config) FromEnv() (Config, error) {
	fill := func(dst *string, env string) {
		if *dst == "" {
			*dst = os.Getenv(env)
		}
	}
	fill(&c.Module, EnvModule)
	fill(&c.TokenPrefix, EnvTokenPrefix)
	fill(&c.Tenant, EnvTenant)
	fill(&c.PIN, EnvPIN)
	fill(&c.PINFile, EnvPINFile)
	fill(&c.PINDir, EnvPINDir)
	fill(&c.SOPINFile, EnvSOPINFile)
	if v := os.Getenv(EnvPoolSize); c.PoolSize == 0 && v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%s=%q: want a positive number of sessions", EnvPoolSize, v)
		}
		c.PoolSize = n
	}
	return c, nil
}

// withDefaults returns c with defaults filled in, or an error saying what
// to fix.
func (c Config) withDefaults() (Config, error) {
	if c.Module == "" {
		c.Module = DefaultModule
	}
	if c.TokenPrefix == "" {
		c.TokenPrefix = DefaultTokenPrefix
	}
	if c.PoolSize == 0 {
		c.PoolSize = DefaultPoolSize
	}
	switch {
	case c.PoolSize < 1:
		return c, fmt.Errorf("%w: pool_size %d: want at least 1 session", ErrConfig, c.PoolSize)
	case len(c.TokenPrefix) > maxTokenLabel-16:
		return c, fmt.Errorf("%w: token_prefix %q is too long: token labels have 32 bytes, keep the prefix under 16", ErrConfig, c.TokenPrefix)
	case c.Tenant != "" && c.PINDir != "":
		return c, fmt.Errorf("%w: set either tenant (with pin or pin_file) for a tenant-scoped provider or pin_dir for an admin, not both", ErrConfig)
	case c.Tenant != "":
		if err := keys.ValidTenant(c.Tenant); err != nil {
			return c, fmt.Errorf("%w: tenant %q: %w", ErrConfig, c.Tenant, err)
		}
		if (c.PIN == "") == (c.PINFile == "") {
			return c, fmt.Errorf("%w: tenant %q: set exactly one of pin and pin_file (%s, %s)", ErrConfig, c.Tenant, EnvPIN, EnvPINFile)
		}
		if c.SOPINFile != "" {
			return c, fmt.Errorf("%w: so_pin_file is for the admin view (pin_dir); a tenant-scoped provider cannot create tokens", ErrConfig)
		}
	case c.PINDir != "":
		if c.PIN != "" || c.PINFile != "" {
			return c, fmt.Errorf("%w: pin and pin_file go with tenant; an admin reads each tenant's PIN from pin_dir", ErrConfig)
		}
	default:
		return c, fmt.Errorf("%w: no credentials: set tenant and pin_file (%s, %s) for one tenant, or pin_dir (%s) for an admin", ErrConfig,
			EnvTenant, EnvPINFile, EnvPINDir)
	}
	return c, nil
}

// TokenLabel is the label of tenant's token: prefix+tenant when that fits
// in the 32 bytes of a PKCS#11 token label, otherwise the prefix, as much of
// the tenant as fits, '~' and 8 hex digits of SHA-256(tenant), so that long
// names stay readable and distinct.
func TokenLabel(prefix, tenant string) string {
	if len(prefix)+len(tenant) <= maxTokenLabel {
		return prefix + tenant
	}
	sum := sha256.Sum256([]byte(tenant))
	suffix := "~" + hex.EncodeToString(sum[:4])
	return prefix + tenant[:maxTokenLabel-len(prefix)-len(suffix)] + suffix
}

// readPINFile reads a PIN file: the first line, without surrounding space.
func readPINFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pin, _, _ := strings.Cut(string(b), "\n")
	pin = strings.TrimSpace(pin)
	if pin == "" {
		return "", fmt.Errorf("PIN file %s is empty", path)
	}
	return pin, nil
}

// tenantPINPath is where an admin keeps tenant's PIN.
func tenantPINPath(dir, tenant string) string {
	return filepath.Join(dir, tenant)
}
