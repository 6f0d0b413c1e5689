package kmsplugin

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tencrypt/tencrypt/keys"
)

// The key_id this plugin reports to kube-apiserver (docs/KMS-PLUGIN.md):
//
//	"tencrypt:1:" backend ":" key ":" created ":" version
//
// backend is the KEKProvider's name, key the cluster key's name (a DNS-1123
// label), created the key's creation time in Unix seconds (0 when the
// backend does not know it) and version the KEK version, all in canonical
// decimal. A rotation raises version; a key re-created under the same name
// (a new keyring, a new Vault) gets a new created time, so a key_id is never
// reused for another KEK.
const (
	keyIDPrefix = "tencrypt:1:"
	// MaxKeyIDSize is KMS v2's limit on a key_id.
	MaxKeyIDSize = 1024
)

// ErrBadKeyID reports a key_id that is not in this plugin's format.
var ErrBadKeyID = errors.New("not a tencrypt KMS plugin key_id")

// KeyID names one KEK version of the cluster key. It holds no key material.
type KeyID struct {
	Backend string
	Key     string
	// Created is the key's creation time in Unix seconds, 0 if unknown.
	Created int64
	Version uint32
}

// String encodes the key_id; it panics on a KeyID that would not parse back
// (a programmer error: every KeyID is built from a validated configuration).
func (k KeyID) String() string {
	if err := k.validate(); err != nil {
		panic("BUG: " + err.Error())
	}
	return keyIDPrefix + k.Backend + ":" + k.Key + ":" + strconv.FormatInt(k.Created, 10) + ":" + strconv.FormatUint(uint64(k.Version), 10)
}

func (k KeyID) validate() error {
	switch {
	case keys.ValidTenant(k.Backend) != nil || len(k.Backend) > keys.MaxProviderName:
		return fmt.Errorf("%w: backend %q", ErrBadKeyID, k.Backend)
	case keys.ValidTenant(k.Key) != nil:
		return fmt.Errorf("%w: key name %q", ErrBadKeyID, k.Key)
	case k.Created < 0:
		return fmt.Errorf("%w: negative creation time", ErrBadKeyID)
	case k.Version == 0:
		return fmt.Errorf("%w: KEK version 0", ErrBadKeyID)
	}
	return nil
}

// canonicalUint parses a decimal without sign, leading zeros or spaces, so
// that every key_id has exactly one spelling.
func canonicalUint(s string, bits int) (uint64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, bits)
	return v, err == nil
}

// ParseKeyID parses a key_id strictly: only the spelling String produces is
// accepted. Errors quote at most the first 64 bytes of s (a key_id is
// public: kube-apiserver stores it in etcd beside the ciphertext).
func ParseKeyID(s string) (KeyID, error) {
	quote := func() string { return strconv.Quote(s[:min(len(s), 64)]) }
	if len(s) > MaxKeyIDSize {
		return KeyID{}, fmt.Errorf("%w: %d bytes, more than %d", ErrBadKeyID, len(s), MaxKeyIDSize)
	}
	rest, ok := strings.CutPrefix(s, keyIDPrefix)
	if !ok {
		return KeyID{}, fmt.Errorf("%w: %s does not start with %q", ErrBadKeyID, quote(), keyIDPrefix)
	}
	f := strings.Split(rest, ":")
	if len(f) != 4 {
		return KeyID{}, fmt.Errorf("%w: %s: want %sBACKEND:KEY:CREATED:VERSION", ErrBadKeyID, quote(), keyIDPrefix)
	}
	created, ok := canonicalUint(f[2], 63)
	if !ok {
		return KeyID{}, fmt.Errorf("%w: %s: bad creation time", ErrBadKeyID, quote())
	}
	version, ok := canonicalUint(f[3], 32)
	if !ok {
		return KeyID{}, fmt.Errorf("%w: %s: bad KEK version", ErrBadKeyID, quote())
	}
	k := KeyID{Backend: f[0], Key: f[1], Created: int64(created), Version: uint32(version)}
	if err := k.validate(); err != nil {
		return KeyID{}, fmt.Errorf("%w (in %s)", err, quote())
	}
	return k, nil
}
