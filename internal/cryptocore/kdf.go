package cryptocore

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/crypto/argon2"
)

// HKDF info labels. Each subkey has its own label, and each label is listed
// in docs/KEYRING.md; changing one changes the on-disk format.
const (
	// LabelKeyringKeyFile derives the keyring master key from an admin key
	// file (keyring formats 1 and 2).
	LabelKeyringKeyFile = "tencrypt keyring v1 admin key file"
	// LabelKeyringAdminBody derives the key sealing a format 1 keyring's
	// admin body from the master key; only migration still reads it.
	LabelKeyringAdminBody = "tencrypt keyring v1 admin body"
	// LabelKeyringTenantBody derives the key sealing a format 1 keyring's
	// tenant record from the tenant access key; no longer used.
	LabelKeyringTenantBody = "tencrypt keyring v1 tenant body"

	// LabelKeyringV2AdminBody derives the key sealing a format 2 keyring's
	// admin body from the master key.
	LabelKeyringV2AdminBody = "tencrypt keyring v2 admin body"
	// LabelKeyringV2TenantBody derives the key sealing a tenant's slot from
	// its access key.
	LabelKeyringV2TenantBody = "tencrypt keyring v2 tenant body"
	// LabelKeyringV2LocatorKey derives a tenant's locator key from its
	// access key. The admin keeps it after a shred, when the access key is
	// destroyed, to seal the tenant's tombstone; it opens no KEK.
	LabelKeyringV2LocatorKey = "tencrypt keyring v2 locator key"
	// LabelKeyringV2Locator derives, from the locator key and a write's
	// random ID, the opaque 16-byte locator a tenant finds its slot by.
	LabelKeyringV2Locator = "tencrypt keyring v2 locator"
	// LabelKeyringV2Tombstone derives the key sealing a shredded tenant's
	// tombstone slot from its locator key.
	LabelKeyringV2Tombstone = "tencrypt keyring v2 tombstone"
)

// DeriveKey returns HKDF-SHA256(secret, salt, label) as a Key. label must be
// one of the Label constants.
func DeriveKey(secret *Key, salt []byte, label string) Key {
	b := hkdfSHA256(secret[:], salt, label, KeySize)
	var k Key
	copy(k[:], b)
	clear(b)
	return k
}

func hkdfSHA256(secret, salt []byte, info string, n int) []byte {
	b, err := hkdf.Key(sha256.New, secret, salt, info, n)
	if err != nil {
		// Only a length above 255*32 bytes can fail.
		panic("BUG: cryptocore: hkdf: " + err.Error())
	}
	return b
}

// KDFSaltSize is the size of the Argon2id salt stored with its parameters.
const KDFSaltSize = 16

// Bounds on Argon2id parameters read from a file: a hostile file must not be
// able to make us allocate without limit or spin for hours.
const (
	MinKDFMemoryKiB = 64
	MaxKDFMemoryKiB = 4 << 20 // 4 GiB
	MaxKDFTime      = 64
	MaxKDFThreads   = 64
)

// ErrKDFParams reports Argon2id parameters outside the accepted bounds.
var ErrKDFParams = errors.New("cryptocore: Argon2id parameters out of bounds")

// KDFParams are Argon2id parameters as stored in a file header.
type KDFParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
	Salt      [KDFSaltSize]byte
}

// DefaultKDFParams returns the second recommended Argon2id setting of RFC
// 9106 (t=3, 64 MiB, 4 lanes) with a fresh random salt.
func DefaultKDFParams() KDFParams {
	p := KDFParams{Time: 3, MemoryKiB: 64 << 10, Threads: 4}
	_, _ = rand.Read(p.Salt[:])
	return p
}

// Validate checks the parameters against the bounds above.
func (p KDFParams) Validate() error {
	switch {
	case p.Time < 1 || p.Time > MaxKDFTime:
		return fmt.Errorf("%w: time %d (want 1..%d)", ErrKDFParams, p.Time, MaxKDFTime)
	case p.Threads < 1 || p.Threads > MaxKDFThreads:
		return fmt.Errorf("%w: threads %d (want 1..%d)", ErrKDFParams, p.Threads, MaxKDFThreads)
	case p.MemoryKiB < MinKDFMemoryKiB || p.MemoryKiB > MaxKDFMemoryKiB || p.MemoryKiB < 8*uint32(p.Threads):
		return fmt.Errorf("%w: memory %d KiB (want %d..%d, and at least 8 per thread)", ErrKDFParams, p.MemoryKiB, MinKDFMemoryKiB, MaxKDFMemoryKiB)
	}
	return nil
}

// Derive runs Argon2id over passphrase. The caller zeroes passphrase and the
// returned key.
func (p KDFParams) Derive(passphrase []byte) (Key, error) {
	if err := p.Validate(); err != nil {
		return Key{}, err
	}
	b := argon2.IDKey(passphrase, p.Salt[:], p.Time, p.MemoryKiB, p.Threads, KeySize)
	var k Key
	copy(k[:], b)
	clear(b)
	return k, nil
}
