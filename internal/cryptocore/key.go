// Package cryptocore holds tencrypt's cryptographic primitives: AES-256-GCM and
// XChaCha20-Poly1305 sealing, HKDF-SHA256 subkeys under named labels, and the
// Argon2id passphrase KDF. It is the only package of tencrypt that imports
// crypto/aes, crypto/cipher or golang.org/x/crypto, so every use of a
// primitive can be reviewed here.
package cryptocore

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"log/slog"
)

// KeySize is the size of every symmetric key tencrypt uses (AES-256,
// XChaCha20-Poly1305).
const KeySize = 32

// Key is a 256-bit secret key, and tencrypt's one secret-key type: KEKs,
// access keys, derived subkeys and, as keys.DEK, data-encryption keys. It is
// a fixed-size array so that it can be zeroed in place; callers defer Zero
// right after creating one. Every formatting path (String, GoString, Format,
// LogValue, MarshalText) prints a redacted placeholder, never the bytes.
type Key [KeySize]byte

// NewRandomKey returns a key from the operating system's CSPRNG.
func NewRandomKey() Key {
	var k Key
	// crypto/rand.Read never returns an error since Go 1.24: it crashes the
	// program instead of handing out a weak key.
	_, _ = rand.Read(k[:])
	return k
}

// KeyFromBytes copies b into a Key. b must be exactly KeySize bytes; the
// caller still owns b and should zero it.
func KeyFromBytes(b []byte) (Key, error) {
	var k Key
	if len(b) != KeySize {
		return k, fmt.Errorf("cryptocore: key must be %d bytes, got %d", KeySize, len(b))
	}
	copy(k[:], b)
	return k, nil
}

// Bytes returns the key bytes, aliasing k: they are valid until k.Zero and
// must not be retained, converted to a string or logged.
func (k *Key) Bytes() []byte { return k[:] }

// Zero overwrites the key with zeros. Copies made earlier (by value passing
// or the garbage collector) are not reached, so this is best effort.
func (k *Key) Zero() { clear(k[:]) }

// IsZero reports whether every byte is zero, in constant time.
func (k *Key) IsZero() bool {
	var z Key
	return subtle.ConstantTimeCompare(k[:], z[:]) == 1
}

// Equal compares two keys in constant time.
func (k *Key) Equal(o *Key) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// redacted is what every formatting path prints instead of key bytes. It
// names no type, since the same key type is a DEK, a KEK or an access key.
const redacted = "Key(REDACTED)"

// String never returns key bytes.
func (Key) String() string { return redacted }

// GoString never returns key bytes (%#v).
func (Key) GoString() string { return redacted }

// Format makes every fmt verb (%v, %x, %s, %d, %#v ...) print the redacted
// placeholder; without it %x on an array would print the bytes.
func (Key) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// LogValue keeps slog from printing key bytes.
func (Key) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps encoders (JSON, slog's JSON handler reaching a Key
// inside a struct) from writing key bytes.
func (Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }
