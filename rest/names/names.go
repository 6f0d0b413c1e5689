// Package names encrypts the file and directory names of a tencrypt volume
// (docs/NAMES.md): each name is padded, encrypted with EME-AES-256 under the
// volume's name key with its directory's random IV as the tweak, and
// written in unpadded base64url. Names whose encryption would not fit in
// 255 bytes are stored under a hash, with the full encrypted name in a
// sidecar file. Symbolic link targets are sealed with AES-256-GCM.
package names

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// Reserved names in a cipher directory. None is valid base64url (they
// contain '.'), so no encrypted name can collide with them.
const (
	// DirIVFile holds the directory's IV, in every cipher directory.
	DirIVFile = "tencrypt.diriv"
	// LongNamePrefix starts the stored name of a long name: the prefix and
	// the base64url SHA-256 of the full encrypted name.
	LongNamePrefix = "tencrypt.longname."
	// LongNameSuffix ends the sidecar file that holds a long name's full
	// encrypted name, beside the entry.
	LongNameSuffix = ".name"
	// NameMax is the longest name Linux file systems store.
	NameMax = 255
	// MaxPlainName is the longest plaintext name accepted.
	MaxPlainName = NameMax
	// MaxSymlinkTarget is the longest plaintext symlink target accepted: the
	// stored target (nonce and tag added, base64url without padding, 4
	// characters per 3 bytes) must fit in PATH_MAX 4096 with its NUL, so at
	// most 4095*3/4 = 3071 sealed bytes, less the 28 of nonce and tag.
	MaxSymlinkTarget = 4095*3/4 - 28
)

// ErrBadName is returned for an encrypted name or symlink target that does
// not decrypt to a valid name: tampered with, corrupted, from another
// volume or directory. The mount maps it to EBADMSG.
var ErrBadName = errors.New("encrypted name does not decrypt (corrupted, tampered with, or from another volume)")

// ErrInvalidName is returned for a plaintext name that cannot be stored.
var ErrInvalidName = errors.New("invalid file name")

// b64 is strict: a name has one encoding, so two stored names never decrypt
// to the same plaintext name.
var b64 = base64.RawURLEncoding.Strict()

// Transform encrypts and decrypts the names of one volume. It is safe for
// concurrent use.
type Transform struct {
	eme     *cryptocore.EME
	symlink *cryptocore.AEAD
}

// NewTransform derives the name and symlink keys from the volume's name
// DEK, salted with the volume ID. The caller zeroes dek.
func NewTransform(dek *keys.DEK, volumeID []byte) (*Transform, error) {
	secret := cryptocore.Key(*dek)
	defer secret.Zero()
	nk := cryptocore.DeriveKey(&secret, volumeID, cryptocore.LabelNamesEME)
	defer nk.Zero()
	sk := cryptocore.DeriveKey(&secret, volumeID, cryptocore.LabelNamesSymlink)
	defer sk.Zero()
	e, err := cryptocore.NewEME(&nk)
	if err != nil {
		return nil, err
	}
	a, err := cryptocore.NewAESGCM(&sk)
	if err != nil {
		return nil, err
	}
	return &Transform{eme: e, symlink: a}, nil
}

// CheckPlain reports whether name can be stored: not empty, "." or "..",
// no '/' or NUL, at most MaxPlainName bytes.
func CheckPlain(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %q contains '/' or NUL", ErrInvalidName, name)
	case len(name) > MaxPlainName:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidName, len(name), MaxPlainName)
	}
	return nil
}

// pad appends PKCS#7 padding up to a multiple of the EME block (1 to 16
// bytes, so it is always removable).
func pad(b []byte) []byte {
	n := cryptocore.EMEBlockSize - len(b)%cryptocore.EMEBlockSize
	return append(b, bytes.Repeat([]byte{byte(n)}, n)...)
}

func unpad(b []byte) ([]byte, bool) {
	if len(b) == 0 || len(b)%cryptocore.EMEBlockSize != 0 {
		return nil, false
	}
	n := int(b[len(b)-1])
	if n == 0 || n > cryptocore.EMEBlockSize {
		return nil, false
	}
	for _, c := range b[len(b)-n:] {
		if int(c) != n {
			return nil, false
		}
	}
	return b[:len(b)-n], true
}

// Encrypt returns the full encrypted form of name in the directory whose
// IV is iv: base64url(EME(iv, pad(name))). It may be longer than NameMax;
// Stored gives the name to store.
func (t *Transform) Encrypt(name string, iv DirIV) (string, error) {
	if err := CheckPlain(name); err != nil {
		return "", err
	}
	ct, err := t.eme.Encrypt(iv[:], pad([]byte(name)))
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(ct), nil
}

// Decrypt reverses Encrypt. Any failure is ErrBadName.
func (t *Transform) Decrypt(enc string, iv DirIV) (string, error) {
	ct, err := b64.DecodeString(enc)
	if err != nil || len(ct) == 0 || len(ct)%cryptocore.EMEBlockSize != 0 || len(ct) > cryptocore.EMEMaxSize {
		return "", fmt.Errorf("%w: %q is not a well-formed encrypted name", ErrBadName, trim(enc))
	}
	pt, err := t.eme.Decrypt(iv[:], ct)
	if err != nil {
		return "", fmt.Errorf("%w: %q", ErrBadName, trim(enc))
	}
	name, ok := unpad(pt)
	if !ok || CheckPlain(string(name)) != nil {
		return "", fmt.Errorf("%w: %q", ErrBadName, trim(enc))
	}
	return string(name), nil
}

func trim(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Stored is the directory entry name for the full encrypted name enc: enc
// itself when it fits in NameMax, else the long name (LongNamePrefix and
// the base64url SHA-256 of enc), whose sidecar holds enc.
func Stored(enc string) (stored string, long bool) {
	if len(enc) <= NameMax {
		return enc, false
	}
	h := sha256.Sum256([]byte(enc))
	return LongNamePrefix + b64.EncodeToString(h[:]), true
}

// IsLong reports whether a stored name is a long name (not its sidecar).
func IsLong(stored string) bool {
	return strings.HasPrefix(stored, LongNamePrefix) && !strings.HasSuffix(stored, LongNameSuffix)
}

// IsSidecar reports whether a stored name is a long name's sidecar.
func IsSidecar(stored string) bool {
	return strings.HasPrefix(stored, LongNamePrefix) && strings.HasSuffix(stored, LongNameSuffix)
}

// Sidecar is the name of the file holding the full encrypted name of the
// long name stored.
func Sidecar(stored string) string { return stored + LongNameSuffix }

// CheckSidecar verifies that enc, read from the sidecar of the long name
// stored, hashes to it, so a sidecar cannot be swapped for another's.
func CheckSidecar(stored, enc string) error {
	if s, long := Stored(enc); !long || s != stored {
		return fmt.Errorf("%w: the sidecar of %q does not match its name", ErrBadName, stored)
	}
	return nil
}

// symlinkAD binds a sealed target to its use.
var symlinkAD = []byte("tencrypt names v1 symlink")

// EncryptSymlink seals a symbolic link target: base64url(nonce ‖ ct ‖ tag).
func (t *Transform) EncryptSymlink(target string) (string, error) {
	if target == "" || len(target) > MaxSymlinkTarget {
		return "", fmt.Errorf("%w: symlink target of %d bytes (want 1 to %d)", ErrInvalidName, len(target), MaxSymlinkTarget)
	}
	return b64.EncodeToString(t.symlink.Seal(nil, []byte(target), symlinkAD)), nil
}

// DecryptSymlink opens a sealed symlink target; any failure is ErrBadName.
func (t *Transform) DecryptSymlink(enc string) (string, error) {
	ct, err := b64.DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("%w: symlink target is not base64url", ErrBadName)
	}
	pt, err := t.symlink.Open(nil, ct, symlinkAD)
	if err != nil {
		return "", fmt.Errorf("%w: symlink target does not authenticate", ErrBadName)
	}
	return string(pt), nil
}
