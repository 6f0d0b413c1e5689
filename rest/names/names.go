// Package names encrypts the file and directory names of a tencrypt volume
// (docs/NAMES.md, volume format 2). Every directory has a random 16-byte
// ID, sealed in its IV file together with where the directory is (its
// parent's ID and its own stored name), so an IV file cannot be moved to
// another directory. A name is padded and enciphered with redundancy
// (cryptocore.NameAE, EME-AES-256) under the volume's name key with its
// directory's ID as the tweak, and written in unpadded base64url: the same
// name in the same directory always gives the same stored name, and a name
// moved to another directory does not decrypt. Names whose encryption
// would not fit in 255 bytes are stored under a hash, with the full
// encrypted name in a sidecar file. Symbolic link targets are sealed with
// XChaCha20-Poly1305, bound to their directory and entry name.
package names

import (
	"bytes"
	"crypto/rand"
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
	// ReservedPrefix starts every name tencrypt keeps beside the encrypted
	// names (IV files, the volume configuration, long names, sidecars).
	ReservedPrefix = "tencrypt."
	// DirIVFile holds the directory's sealed ID, in every cipher directory.
	DirIVFile = "tencrypt.diriv"
	// DirIVNextFile holds the directory's ID sealed for the place a rename
	// is moving it to, while the rename is under way (docs/NAMES.md).
	DirIVNextFile = "tencrypt.diriv.next"
	// TempPrefix starts the temporary name under which the mount writes an
	// entry before renaming it into place (a symlink sealed again for its
	// new name).
	TempPrefix = "tencrypt.tmp."
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
	// MaxEncName is the length of the longest full encrypted name: a
	// 255-byte name padded to 256 bytes, the 16 bytes of redundancy, in
	// unpadded base64url (6 bits a character, rounded up): 363. A sidecar
	// holds at most this many bytes.
	MaxEncName = (((MaxPlainName/cryptocore.EMEBlockSize+1)*cryptocore.EMEBlockSize+cryptocore.NameAERedundancy)*8 + 5) / 6
	// MaxShortName is the longest plaintext name stored as itself (not as
	// a long name): 159 bytes pad to 160, plus 16 is 176 bytes, 235
	// characters; 160 bytes would take 256.
	MaxShortName = 159
	// MaxSymlinkTarget is the longest plaintext symlink target accepted: the
	// stored target (nonce and tag added, base64url without padding, 4
	// characters per 3 bytes) must fit in PATH_MAX 4096 with its NUL, so at
	// most 4095*3/4 = 3071 sealed bytes, less the 40 of nonce and tag.
	MaxSymlinkTarget = 4095*3/4 - cryptocore.XChaChaOverhead
)

// ErrBadName is returned for an encrypted name, sidecar or symlink target
// that does not decrypt: tampered with, corrupted, moved or copied from
// another directory, entry or volume. The mount maps it to EIO (or ENOENT
// on lookup, where the name simply is not there).
var ErrBadName = errors.New("encrypted name does not decrypt (corrupted, tampered with, moved from another directory, or from another volume)")

// ErrInvalidName is returned for a plaintext name that cannot be stored.
var ErrInvalidName = errors.New("invalid file name")

// b64 is strict about padding bits; decode64 adds what Strict leaves out
// (it skips '\r' and '\n'), so that a name has exactly one encoding and two
// stored names never decrypt to the same plaintext name.
var b64 = base64.RawURLEncoding.Strict()

// decode64 decodes s only if s is the canonical encoding of the result.
func decode64(s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if b64.EncodedLen(len(b)) != len(s) {
		return nil, errors.New("not canonical base64url")
	}
	return b, nil
}

// Transform encrypts and decrypts the names, directory IDs and symlink
// targets of one volume. It is safe for concurrent use.
type Transform struct {
	names    *cryptocore.NameAE
	dirID    *cryptocore.AEAD
	symlink  *cryptocore.AEAD
	xname    *cryptocore.NameAE // xattr names (xattr.go)
	xvalue   *cryptocore.AEAD   // xattr values
	volumeID [VolumeIDSize]byte
}

// NewTransform derives the name, directory-ID and symlink keys from the
// volume's name DEK, salted with the volume ID (VolumeIDSize bytes). The
// caller zeroes dek.
func NewTransform(dek *keys.DEK, volumeID []byte) (*Transform, error) {
	if len(volumeID) != VolumeIDSize {
		return nil, fmt.Errorf("volume ID of %d bytes, want %d", len(volumeID), VolumeIDSize)
	}
	secret := cryptocore.Key(*dek)
	defer secret.Zero()
	nk := cryptocore.DeriveKey(&secret, volumeID, cryptocore.LabelNamesEME)
	defer nk.Zero()
	dk := cryptocore.DeriveKey(&secret, volumeID, cryptocore.LabelNamesDirID)
	defer dk.Zero()
	sk := cryptocore.DeriveKey(&secret, volumeID, cryptocore.LabelNamesSymlink)
	defer sk.Zero()
	t := &Transform{}
	copy(t.volumeID[:], volumeID)
	var err error
	if t.names, err = cryptocore.NewNameAE(&nk); err != nil {
		return nil, err
	}
	if t.dirID, err = cryptocore.NewXChaCha20Poly1305(&dk); err != nil {
		return nil, err
	}
	if t.symlink, err = cryptocore.NewXChaCha20Poly1305(&sk); err != nil {
		return nil, err
	}
	if err = t.xattrKeys(&secret, volumeID); err != nil {
		return nil, err
	}
	return t, nil
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
// bytes, so it is always removable). It hides a name's length to within
// 16 bytes.
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
// ID is dir: base64url(NameAE(tweak = dir, pad(name))). It may be longer
// than NameMax; Stored gives the name to store.
func (t *Transform) Encrypt(name string, dir DirID) (string, error) {
	if err := CheckPlain(name); err != nil {
		return "", err
	}
	ct, err := t.names.Seal(dir[:], pad([]byte(name)))
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(ct), nil
}

// Decrypt reverses Encrypt. Any failure is ErrBadName; a name encrypted in
// another directory (another ID) fails, with probability 1 - 2^-128.
func (t *Transform) Decrypt(enc string, dir DirID) (string, error) {
	if len(enc) > MaxEncName {
		return "", fmt.Errorf("%w: %q is too long to be an encrypted name", ErrBadName, trim(enc))
	}
	ct, err := decode64(enc)
	if err != nil || len(ct)%cryptocore.EMEBlockSize != 0 {
		return "", fmt.Errorf("%w: %q is not a well-formed encrypted name", ErrBadName, trim(enc))
	}
	pt, err := t.names.Open(dir[:], ct)
	if err != nil {
		return "", fmt.Errorf("%w: %q does not authenticate in this directory", ErrBadName, trim(enc))
	}
	name, ok := unpad(pt)
	if !ok || CheckPlain(string(name)) != nil {
		// Authentic but not a name we write: only a bug or a broken key
		// gets here.
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

// IsReserved reports whether a stored name is one of tencrypt's own files
// (IV files, volume configuration, sidecars), which listings hide. Long
// names are entries, not reserved.
func IsReserved(stored string) bool {
	return strings.HasPrefix(stored, ReservedPrefix) && !IsLong(stored)
}

// TempName returns a fresh reserved name for a temporary entry.
func TempName() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return TempPrefix + b64.EncodeToString(b[:])
}

// Sidecar is the name of the file holding the full encrypted name of the
// long name stored.
func Sidecar(stored string) string { return stored + LongNameSuffix }

// CheckSidecar verifies that enc, read from the sidecar of the long name
// stored, hashes to it, so a sidecar cannot be swapped for another's. That
// enc belongs to its directory is checked by Decrypt.
func CheckSidecar(stored, enc string) error {
	if len(enc) > MaxEncName {
		return fmt.Errorf("%w: the sidecar of %q is longer than any encrypted name", ErrBadName, trim(stored))
	}
	if s, long := Stored(enc); !long || s != stored {
		return fmt.Errorf("%w: the sidecar of %q does not match its name", ErrBadName, trim(stored))
	}
	return nil
}

// DecryptLong decrypts the long name stored in directory dir from the
// content of its sidecar: the content must hash to stored and decrypt
// under dir. Any failure is ErrBadName.
func (t *Transform) DecryptLong(stored string, sidecar []byte, dir DirID) (string, error) {
	if !IsLong(stored) {
		return "", fmt.Errorf("%w: %q is not a long name", ErrBadName, trim(stored))
	}
	enc := string(sidecar)
	if err := CheckSidecar(stored, enc); err != nil {
		return "", err
	}
	return t.Decrypt(enc, dir)
}

// symlinkADPrefix starts the associated data of a sealed symlink target.
const symlinkADPrefix = "tencrypt names v2 symlink"

// symlinkAD binds a sealed target to its entry:
// ad = "tencrypt names v2 symlink" ‖ directory ID (16) ‖ stored name.
// The stored name is last, so the fields need no length prefix.
func symlinkAD(dir DirID, stored string) []byte {
	ad := make([]byte, 0, len(symlinkADPrefix)+DirIDSize+len(stored))
	ad = append(ad, symlinkADPrefix...)
	ad = append(ad, dir[:]...)
	return append(ad, stored...)
}

// EncryptSymlink seals the target of the symbolic link stored (its stored
// name) in directory dir: base64url(nonce ‖ ct ‖ tag). Renaming or linking
// the symlink elsewhere means sealing its target again.
func (t *Transform) EncryptSymlink(target string, dir DirID, stored string) (string, error) {
	if target == "" || len(target) > MaxSymlinkTarget {
		return "", fmt.Errorf("%w: symlink target of %d bytes (want 1 to %d)", ErrInvalidName, len(target), MaxSymlinkTarget)
	}
	return b64.EncodeToString(t.symlink.Seal(nil, []byte(target), symlinkAD(dir, stored))), nil
}

// DecryptSymlink opens the sealed target of the symbolic link stored in
// directory dir; any failure, including a target copied from another
// symlink, is ErrBadName.
func (t *Transform) DecryptSymlink(enc string, dir DirID, stored string) (string, error) {
	if len(enc) > 4095 {
		return "", fmt.Errorf("%w: symlink target too long", ErrBadName)
	}
	ct, err := decode64(enc)
	if err != nil {
		return "", fmt.Errorf("%w: symlink target is not base64url", ErrBadName)
	}
	pt, err := t.symlink.Open(nil, ct, symlinkAD(dir, stored))
	if err != nil || len(pt) == 0 {
		return "", fmt.Errorf("%w: symlink target does not authenticate for this entry (tampered with, or copied from another symlink)", ErrBadName)
	}
	return string(pt), nil
}
