package cryptocore

import (
	"crypto/hkdf"
	"crypto/sha512"
	"fmt"
	"log/slog"
)

// LabelFscryptMasterKey derives a volume's 64-byte fscrypt master key from
// its DEK; the salt is the volume's 128-bit ID (docs/FSCRYPT.md). Changing
// it changes the on-disk format: every volume's key identifier with it.
const LabelFscryptMasterKey = "tencrypt fscrypt v1 master key"

// WideKeySize is the size of a WideKey: the largest key the kernel's
// fscrypt accepts (FSCRYPT_MAX_KEY_SIZE), which AES-256-XTS needs whole.
const WideKeySize = 64

// WideKey is a 512-bit secret: an fscrypt master key, handed to the kernel
// and zeroed. Like Key it is a fixed-size array with Zero, and every
// formatting path prints a redacted placeholder, never the bytes.
type WideKey [WideKeySize]byte

// DeriveWideKey returns HKDF-SHA256(secret, salt, label) as 64 bytes.
// label must be one of the Label constants.
func DeriveWideKey(secret *Key, salt []byte, label string) WideKey {
	b := hkdfSHA256(secret[:], salt, label, WideKeySize)
	var k WideKey
	copy(k[:], b)
	clear(b)
	return k
}

// Zero overwrites the key with zeros (best effort, as Key.Zero).
func (k *WideKey) Zero() { clear(k[:]) }

// String never returns key bytes.
func (WideKey) String() string { return redacted }

// GoString never returns key bytes (%#v).
func (WideKey) GoString() string { return redacted }

// Format makes every fmt verb print the redacted placeholder.
func (WideKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue keeps slog from printing key bytes.
func (WideKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps encoders from writing key bytes.
func (WideKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// FscryptKeyIdentifierSize is the size of an fscrypt v2 key identifier.
const FscryptKeyIdentifierSize = 16

// FscryptKeyIdentifier computes the identifier the kernel gives the v2
// master key k (fs/crypto/hkdf.c and keyring.c): HKDF-SHA512 with the
// default (all-zero) salt, info "fscrypt\0" followed by the context byte
// HKDF_CONTEXT_KEY_IDENTIFIER (1), 16 bytes. Knowing it before the key is
// added lets a caller refuse a key that is not the one a policy names
// without touching the kernel's keyring.
func FscryptKeyIdentifier(k *WideKey) [FscryptKeyIdentifierSize]byte {
	b, err := hkdf.Key(sha512.New, k[:], nil, "fscrypt\x00\x01", FscryptKeyIdentifierSize)
	if err != nil {
		panic("BUG: cryptocore: hkdf: " + err.Error())
	}
	var id [FscryptKeyIdentifierSize]byte
	copy(id[:], b)
	return id
}
