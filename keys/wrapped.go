package keys

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"regexp"
)

// The wrapped-key blob, docs/WRAPPED-KEY.md:
//
//	magic "TCWK" (4) ‖ format version (1) ‖ provider length (1) ‖ provider ‖
//	tenant length (1) ‖ tenant ‖ purpose length (1) ‖ purpose ‖
//	KEK version (4, big endian) ‖ ciphertext length (2, big endian) ‖ ciphertext
const (
	wrappedMagic = "TCWK"
	// WrappedKeyVersion is the blob format version this package writes and
	// reads.
	WrappedKeyVersion = 1
	// MaxProviderName, MaxPurpose and MaxWrappedCiphertext bound the
	// variable fields; parsing rejects anything larger.
	MaxProviderName      = 16
	MaxPurpose           = 32
	MaxWrappedCiphertext = 1024
	// MaxWrappedKeySize is the largest valid blob.
	MaxWrappedKeySize = 4 + 1 + 1 + MaxProviderName + 1 + 63 + 1 + MaxPurpose + 4 + 2 + MaxWrappedCiphertext
)

var purposeRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?$`)

// ValidPurpose checks a purpose name: lower-case letters, digits, '.' and
// '-', at most 32 characters, e.g. "file", "volume", "kms-plugin".
func ValidPurpose(purpose string) error {
	if !purposeRE.MatchString(purpose) {
		return fmt.Errorf("%w: purpose %q: want lower-case letters, digits, '.' and '-', at most %d characters", ErrMalformed, purpose, MaxPurpose)
	}
	return nil
}

// WrappedKey is a DEK wrapped under a tenant's KEK, with everything needed
// to unwrap it: which backend, tenant and KEK version, and what it is for.
// Provider, Tenant and Purpose are bound into the backend's AEAD as
// associated data (Envelope), so editing any of them makes Unwrap fail with
// ErrAuth.
type WrappedKey struct {
	Provider   string
	Tenant     string
	Purpose    string
	KEKVersion uint32
	// Ciphertext is the backend's output, opaque here.
	Ciphertext []byte
}

// String describes the blob without its ciphertext.
func (w WrappedKey) String() string {
	return fmt.Sprintf("wrapped key (%s, tenant %s, purpose %s, KEK v%d)", w.Provider, w.Tenant, w.Purpose, w.KEKVersion)
}

// Validate checks every field against the format's bounds.
func (w *WrappedKey) Validate() error {
	switch {
	case len(w.Provider) == 0 || len(w.Provider) > MaxProviderName || ValidTenant(w.Provider) != nil:
		return fmt.Errorf("wrapped key: %w: provider name %q", ErrMalformed, w.Provider)
	case ValidTenant(w.Tenant) != nil:
		return fmt.Errorf("wrapped key: %w: tenant %q is not a DNS-1123 label", ErrMalformed, w.Tenant)
	case ValidPurpose(w.Purpose) != nil:
		return fmt.Errorf("wrapped key: %w", ValidPurpose(w.Purpose))
	case w.KEKVersion == 0:
		return fmt.Errorf("wrapped key: %w: KEK version 0", ErrMalformed)
	case len(w.Ciphertext) == 0 || len(w.Ciphertext) > MaxWrappedCiphertext:
		return fmt.Errorf("wrapped key: %w: ciphertext of %d bytes (want 1 to %d)", ErrMalformed, len(w.Ciphertext), MaxWrappedCiphertext)
	}
	return nil
}

// MarshalBinary encodes the blob; it fails on fields out of bounds.
func (w WrappedKey) MarshalBinary() ([]byte, error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 4+1+3+len(w.Provider)+len(w.Tenant)+len(w.Purpose)+6+len(w.Ciphertext))
	b = append(b, wrappedMagic...)
	b = append(b, WrappedKeyVersion)
	for _, s := range []string{w.Provider, w.Tenant, w.Purpose} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint32(b, w.KEKVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(w.Ciphertext)))
	return append(b, w.Ciphertext...), nil
}

// IsWrappedKey reports whether b starts with the blob's magic.
func IsWrappedKey(b []byte) bool { return len(b) >= 4 && string(b[:4]) == wrappedMagic }

func blobError(sentinel error, what string, b []byte) error {
	return fmt.Errorf("wrapped key: %w: %s (first bytes %s)", sentinel, what, hex.EncodeToString(b[:min(len(b), 16)]))
}

// UnmarshalBinary parses a blob strictly: wrong magic, unknown version,
// truncation, trailing bytes and fields out of bounds are errors wrapping
// ErrMalformed or ErrUnknownFormat. The ciphertext is copied.
func (w *WrappedKey) UnmarshalBinary(b []byte) error {
	if len(b) > MaxWrappedKeySize {
		return blobError(ErrMalformed, fmt.Sprintf("%d bytes, more than the %d-byte maximum", len(b), MaxWrappedKeySize), b)
	}
	out, n, err := ParseWrappedKey(b)
	if err != nil {
		return err
	}
	if n != len(b) {
		return blobError(ErrMalformed, fmt.Sprintf("%d trailing bytes after the ciphertext", len(b)-n), b)
	}
	*w = out
	return nil
}

// ParseWrappedKey parses the blob at the start of b, which may continue
// with other data (a blob embedded in a file header), and returns it and its
// length. Its checks are UnmarshalBinary's except for trailing bytes.
func ParseWrappedKey(b []byte) (WrappedKey, int, error) {
	if !IsWrappedKey(b) {
		return WrappedKey{}, 0, blobError(ErrMalformed, "not a tencrypt wrapped key (wrong magic)", b)
	}
	if len(b) < 5 {
		return WrappedKey{}, 0, blobError(ErrMalformed, "truncated after the magic", b)
	}
	if b[4] != WrappedKeyVersion {
		return WrappedKey{}, 0, blobError(ErrUnknownFormat, fmt.Sprintf("format version %d (this tencrypt reads version %d)", b[4], WrappedKeyVersion), b)
	}
	rest := b[5:]
	field := func(name string, maxLen int) (string, error) {
		if len(rest) < 1 {
			return "", blobError(ErrMalformed, "truncated before the "+name, b)
		}
		n := int(rest[0])
		if n == 0 || n > maxLen {
			return "", blobError(ErrMalformed, fmt.Sprintf("%s of %d bytes (want 1 to %d)", name, n, maxLen), b)
		}
		if len(rest) < 1+n {
			return "", blobError(ErrMalformed, "truncated in the "+name, b)
		}
		s := string(rest[1 : 1+n])
		rest = rest[1+n:]
		return s, nil
	}
	var out WrappedKey
	var err error
	if out.Provider, err = field("provider name", MaxProviderName); err != nil {
		return WrappedKey{}, 0, err
	}
	if out.Tenant, err = field("tenant", 63); err != nil {
		return WrappedKey{}, 0, err
	}
	if out.Purpose, err = field("purpose", MaxPurpose); err != nil {
		return WrappedKey{}, 0, err
	}
	if len(rest) < 6 {
		return WrappedKey{}, 0, blobError(ErrMalformed, "truncated before the ciphertext", b)
	}
	out.KEKVersion = binary.BigEndian.Uint32(rest)
	n := int(binary.BigEndian.Uint16(rest[4:]))
	rest = rest[6:]
	if n > len(rest) {
		return WrappedKey{}, 0, blobError(ErrMalformed, fmt.Sprintf("truncated: ciphertext of %d bytes announced, %d present", n, len(rest)), b)
	}
	out.Ciphertext = append([]byte(nil), rest[:n]...)
	if err := out.Validate(); err != nil {
		return WrappedKey{}, 0, err
	}
	return out, len(b) - len(rest) + n, nil
}

// bindingAD is the associated data every backend authenticates with a
// wrapped DEK: "tencrypt wrapped-key" ‖ 0 ‖ format version ‖
// provider length ‖ provider ‖ tenant length ‖ tenant ‖ purpose length ‖
// purpose. It ties the ciphertext to the blob's header fields.
func bindingAD(provider, tenant, purpose string) []byte {
	const label = "tencrypt wrapped-key\x00"
	b := make([]byte, 0, len(label)+4+len(provider)+len(tenant)+len(purpose))
	b = append(b, label...)
	b = append(b, WrappedKeyVersion)
	for _, s := range []string{provider, tenant, purpose} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b
}
