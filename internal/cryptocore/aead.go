package cryptocore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrAuth is returned by Open for any ciphertext that does not authenticate:
// wrong key, wrong associated data, modified or truncated. It never says
// which.
var ErrAuth = errors.New("cryptocore: message authentication failed")

// Sizes of the sealed format nonce ‖ ciphertext ‖ tag.
const (
	GCMNonceSize       = 12
	XChaChaNonceSize   = 24
	TagSize            = 16
	GCMOverhead        = GCMNonceSize + TagSize
	XChaChaOverhead    = XChaChaNonceSize + TagSize
	maxSealedPlaintext = 1 << 30
)

// AEAD seals with a fresh random nonce per message and writes the nonce in
// front of the ciphertext. Random 96-bit GCM nonces are safe only while a key
// seals few messages (well under 2^32): tencrypt uses AESGCM for KEKs
// wrapping DEKs and keyring bodies, and XChaCha20-Poly1305 (192-bit nonces)
// where one key seals many messages.
type AEAD struct {
	aead cipher.AEAD
	name string
}

// NewAESGCM returns AES-256-GCM under k. The key is copied into the cipher's
// schedule; the caller may zero k afterwards.
func NewAESGCM(k *Key) (*AEAD, error) {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("cryptocore: AES-256: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("cryptocore: GCM: %w", err)
	}
	return &AEAD{aead: g, name: "AES-256-GCM"}, nil
}

// NewXChaCha20Poly1305 returns XChaCha20-Poly1305 under k.
func NewXChaCha20Poly1305(k *Key) (*AEAD, error) {
	a, err := chacha20poly1305.NewX(k[:])
	if err != nil {
		return nil, fmt.Errorf("cryptocore: XChaCha20-Poly1305: %w", err)
	}
	return &AEAD{aead: a, name: "XChaCha20-Poly1305"}, nil
}

// Name is the algorithm name, for error messages and logs.
func (a *AEAD) Name() string { return a.name }

// NonceSize is the size of the nonce prefix of a sealed message.
func (a *AEAD) NonceSize() int { return a.aead.NonceSize() }

// Overhead is the number of bytes Seal adds: nonce and tag.
func (a *AEAD) Overhead() int { return a.aead.NonceSize() + a.aead.Overhead() }

// Seal appends nonce ‖ ciphertext ‖ tag of plaintext, authenticating ad, to
// dst and returns the result. dst and plaintext must not overlap.
func (a *AEAD) Seal(dst, plaintext, ad []byte) []byte {
	if len(plaintext) > maxSealedPlaintext {
		panic("BUG: cryptocore: Seal of an oversize message")
	}
	ns := a.aead.NonceSize()
	out := append(dst, make([]byte, ns)...)
	nonce := out[len(out)-ns:]
	_, _ = rand.Read(nonce)
	return a.aead.Seal(out, nonce, plaintext, ad)
}

// Open checks and opens sealed (nonce ‖ ciphertext ‖ tag) with ad and
// appends the plaintext to dst. Any failure is ErrAuth, and nothing of the
// plaintext is appended.
func (a *AEAD) Open(dst, sealed, ad []byte) ([]byte, error) {
	ns := a.aead.NonceSize()
	if len(sealed) < ns+a.aead.Overhead() {
		return nil, ErrAuth
	}
	out, err := a.aead.Open(dst, sealed[:ns], sealed[ns:], ad)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// sealWithNonce seals under a caller-chosen nonce, for known-answer tests
// only; production code uses Seal. It panics on a wrong nonce size.
func (a *AEAD) sealWithNonce(dst, nonce, plaintext, ad []byte) []byte {
	if len(nonce) != a.aead.NonceSize() {
		panic("BUG: cryptocore: wrong nonce size")
	}
	out := append(dst, nonce...)
	return a.aead.Seal(out, nonce, plaintext, ad)
}
