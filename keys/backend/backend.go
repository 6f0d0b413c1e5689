// Package backend opens the KEKProvider a configuration names. It is the one
// place that knows every backend, so commands and daemons take a Config and
// stay backend-agnostic.
package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/keys/pkcs11"
	"github.com/tencrypt/tencrypt/keys/vault"
)

// Config selects a backend and holds each backend's settings; only the
// section Backend names is used. The json tags are the configuration file's
// field names (YAML is read through them), and the CLI derives its
// --<section>-<field> flags and TENCRYPT_<SECTION>_<FIELD> variables from them.
type Config struct {
	// Backend is one of Names().
	Backend string        `json:"backend,omitempty" yaml:"backend,omitempty"`
	Local   local.Config  `json:"local,omitzero" yaml:"local,omitempty"`
	Vault   vault.Config  `json:"vault,omitzero" yaml:"vault,omitempty"`
	PKCS11  pkcs11.Config `json:"pkcs11,omitzero" yaml:"pkcs11,omitempty"`
	// BACKEND-CONFIG: add one field per backend here, e.g.
	// Vault vault.Config `json:"vault,omitzero" yaml:"vault,omitempty"`
}

// ErrUnknownBackend reports a Backend name that is not one of Names().
var ErrUnknownBackend = errors.New("unknown key backend")

// ErrConfig marks a configuration Load cannot read: an unreadable or
// invalid file, a variable or flag that does not parse.
var ErrConfig = errors.New("invalid key configuration")

// configError keeps err's message and makes it match ErrConfig as well as
// what err wraps.
type configError struct{ err error }

func (e configError) Error() string   { return e.err.Error() }
func (e configError) Unwrap() []error { return []error{e.err, ErrConfig} }

// Names lists the valid values of Config.Backend.
func Names() []string {
	return []string{local.Name, vault.Name, pkcs11.Name /* BACKEND-NAME: add the backend's name here */}
}

// Open opens the backend cfg names with its section of cfg. The caller
// closes the provider.
func Open(ctx context.Context, cfg Config) (keys.KEKProvider, error) {
	switch cfg.Backend {
	case local.Name, "":
		p, err := local.Open(ctx, cfg.Local)
		if err != nil {
			return nil, err
		}
		return p, nil
	case vault.Name:
		return vault.Open(ctx, cfg.Vault)
	case pkcs11.Name:
		p, err := pkcs11.Open(ctx, cfg.PKCS11)
		if err != nil {
			return nil, err // not a typed nil *pkcs11.Provider in the interface
		}
		return p, nil
	// BACKEND-CASE: add one case per backend here, e.g.
	// case vault.Name:
	// 	return vault.Open(ctx, cfg.Vault)
	default:
		return nil, fmt.Errorf("%w %q: use one of %s", ErrUnknownBackend, cfg.Backend, strings.Join(Names(), ", "))
	}
}
