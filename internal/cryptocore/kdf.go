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
	// file.
	LabelKeyringKeyFile = "tencrypt keyring v1 admin key file"
	// LabelKeyringAdminBody derives the key sealing the keyring's admin body
	// from the master key.
	LabelKeyringAdminBody = "tencrypt keyring v1 admin body"
	// LabelKeyringTenantBody derives the key sealing a tenant's record from
	// the tenant access key.
	LabelKeyringTenantBody = "tencrypt keyring v1 tenant body"
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
