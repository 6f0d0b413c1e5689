// Package local is tencrypt's embedded key backend: tenant KEKs in a keyring
// file on this machine, sealed under an admin key (from a passphrase or a key
// file) and, per tenant, under that tenant's access key. docs/KEYRING.md
// specifies the file.
package local

import (
	"context"
	"errors"

	"github.com/tencrypt/tencrypt/keys"
)

// Name is the backend name recorded in wrapped keys.
const Name = "local"

// Open opens the keyring named by cfg.
func Open(ctx context.Context, cfg Config) (keys.KEKProvider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return nil, errors.New("local keyring: not implemented yet")
}
