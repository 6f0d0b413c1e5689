package tunnel

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
)

// KeySize is the size of WireGuard's Curve25519 keys and pre-shared keys.
const KeySize = 32

// PublicKey is a pod's WireGuard public key. It is not secret: the
// registry publishes it so that peers can accept the pod.
type PublicKey [KeySize]byte

// String is the standard base64 form, as `wg` prints it.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Short is the abbreviation used in logs, as wireguard-go prints peers.
func (k PublicKey) Short() string {
	s := k.String()
	return s[:4] + "…" + s[len(s)-5:len(s)-1]
}

// IsZero reports the unset key.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// ParsePublicKey reads the base64 form.
func ParsePublicKey(s string) (PublicKey, error) {
	var k PublicKey
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != KeySize {
		return k, fmt.Errorf("invalid WireGuard public key %q: want 32 bytes in base64", s)
	}
	copy(k[:], b)
	return k, nil
}

// privateKey is a pod's WireGuard private key. It exists only in the agent's
// memory: never written, logged or sent anywhere.
type privateKey [KeySize]byte

func newPrivateKey() (privateKey, PublicKey, error) {
	var k privateKey
	var pub PublicKey
	sk, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return k, pub, fmt.Errorf("generate WireGuard key: %w", err)
	}
	copy(k[:], sk.Bytes())
	copy(pub[:], sk.PublicKey().Bytes())
	return k, pub, nil
}

func (k *privateKey) zero() { clear(k[:]) }

const redacted = "[redacted]"

func (privateKey) String() string       { return redacted }
func (privateKey) GoString() string     { return redacted }
func (privateKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// NewPublicKey returns the public half of a fresh key pair and forgets the
// private half: an identity no one can handshake as, for peers that exist
// only in the registry (the lab's virtual pods in scale benchmarks).
func NewPublicKey() (PublicKey, error) {
	k, pub, err := newPrivateKey()
	k.zero()
	return pub, err
}
