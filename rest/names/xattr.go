package names

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// Extended attributes in the user namespace (docs/MOUNT.md, "Extended
// attributes"). A plaintext attribute user.<name> is stored on the cipher
// entry as user.tencrypt.<base64url(NameAE(tweak 0, pad(name)))> (equal
// names give equal stored names, so an attribute is found without a
// scan), and its value as SealXattr's output, bound to the entry's
// identity and to the attribute's name.

const (
	// XattrUserPrefix is the namespace of the attributes the mount stores.
	XattrUserPrefix = "user."
	// XattrStoredPrefix starts every stored attribute name.
	XattrStoredPrefix = "user.tencrypt."
	// XattrNameMax is the longest stored attribute name (XATTR_NAME_MAX).
	XattrNameMax = 255
	// XattrValueMax is the largest stored value (XATTR_SIZE_MAX).
	XattrValueMax = 65536
	// xattrVersion is the first byte of a sealed value.
	xattrVersion = 1
	// XattrOverhead is what sealing adds to a value: version, nonce, tag.
	XattrOverhead = 1 + cryptocore.XChaChaOverhead
	// XattrMaxPlainValue is the largest plaintext value that fits.
	XattrMaxPlainValue = XattrValueMax - XattrOverhead
	// xattrADPrefix starts the associated data of a sealed value.
	xattrADPrefix = "tencrypt names v2 xattr"
)

// ErrXattrName is an attribute name the mount cannot store: not in the
// user namespace, empty, or too long once encrypted.
var ErrXattrName = errors.New("extended attribute name cannot be stored")

// ErrBadXattr is a stored value that does not authenticate for its entry
// and name (tampered with, or copied from another entry or attribute).
var ErrBadXattr = errors.New("extended attribute value does not authenticate for this entry and name (tampered with, or copied from another file or attribute)")

// xattrTweak is the fixed NameAE tweak of attribute names: they are not
// bound to a directory, so an attribute keeps its name across renames and
// hard links.
var xattrTweak [cryptocore.EMETweakSize]byte

func (t *Transform) xattrKeys(secret *cryptocore.Key, volumeID []byte) error {
	nk := cryptocore.DeriveKey(secret, volumeID, cryptocore.LabelNamesXattrName)
	defer nk.Zero()
	vk := cryptocore.DeriveKey(secret, volumeID, cryptocore.LabelNamesXattrValue)
	defer vk.Zero()
	var err error
	if t.xname, err = cryptocore.NewNameAE(&nk); err != nil {
		return err
	}
	t.xvalue, err = cryptocore.NewXChaCha20Poly1305(&vk)
	return err
}

// EncryptXattrName returns the stored name of plaintext attribute attr,
// which must be user.<something>; ErrXattrName if it cannot be stored.
func (t *Transform) EncryptXattrName(attr string) (string, error) {
	name, ok := strings.CutPrefix(attr, XattrUserPrefix)
	if !ok || name == "" {
		return "", fmt.Errorf("%w: %q is not in the user namespace", ErrXattrName, trim(attr))
	}
	if len(name) > cryptocore.NameAEMaxInput-cryptocore.EMEBlockSize {
		return "", fmt.Errorf("%w: %q is too long", ErrXattrName, trim(attr))
	}
	ct, err := t.xname.Seal(xattrTweak[:], pad([]byte(name)))
	if err != nil {
		return "", err
	}
	stored := XattrStoredPrefix + b64.EncodeToString(ct)
	if len(stored) > XattrNameMax {
		return "", fmt.Errorf("%w: %q is %d bytes once encrypted, more than %d", ErrXattrName, trim(attr), len(stored), XattrNameMax)
	}
	return stored, nil
}

// DecryptXattrName reverses EncryptXattrName; any stored name that is not
// one of ours, or does not authenticate, is ErrBadName.
func (t *Transform) DecryptXattrName(stored string) (string, error) {
	enc, ok := strings.CutPrefix(stored, XattrStoredPrefix)
	if !ok || len(stored) > XattrNameMax {
		return "", fmt.Errorf("%w: attribute %q is not an encrypted name", ErrBadName, trim(stored))
	}
	ct, err := decode64(enc)
	if err != nil || len(ct)%cryptocore.EMEBlockSize != 0 {
		return "", fmt.Errorf("%w: attribute %q is not a well-formed encrypted name", ErrBadName, trim(stored))
	}
	pt, err := t.xname.Open(xattrTweak[:], ct)
	if err != nil {
		return "", fmt.Errorf("%w: attribute %q does not authenticate", ErrBadName, trim(stored))
	}
	name, ok := unpad(pt)
	if !ok || len(name) == 0 {
		return "", fmt.Errorf("%w: attribute %q has bad padding", ErrBadName, trim(stored))
	}
	return XattrUserPrefix + string(name), nil
}

// xattrAD binds a value to its entry and attribute:
// ad = "tencrypt names v2 xattr" ‖ kind (1) ‖ len(entry) (1) ‖ entry ‖
// stored attribute name. entry is the entry's identity (a regular file's
// file ID, a directory's own ID), kind says which ('f' or 'd').
func xattrAD(kind byte, entry []byte, stored string) []byte {
	ad := make([]byte, 0, len(xattrADPrefix)+2+len(entry)+len(stored))
	ad = append(ad, xattrADPrefix...)
	ad = append(ad, kind, byte(len(entry)))
	ad = append(ad, entry...)
	return append(ad, stored...)
}

// SealXattr seals value for attribute stored (its stored name) of the
// entry of kind ('f' file, 'd' directory) and identity entry (at most
// 255 bytes): version (1) ‖ nonce (24) ‖ ciphertext ‖ tag (16).
func (t *Transform) SealXattr(value []byte, kind byte, entry []byte, stored string) ([]byte, error) {
	if len(value) > XattrMaxPlainValue {
		return nil, fmt.Errorf("extended attribute value of %d bytes, more than %d", len(value), XattrMaxPlainValue)
	}
	if len(entry) > 255 {
		return nil, fmt.Errorf("entry identity of %d bytes", len(entry))
	}
	out := make([]byte, 1, XattrOverhead+len(value))
	out[0] = xattrVersion
	return t.xvalue.Seal(out, value, xattrAD(kind, entry, stored)), nil
}

// OpenXattr opens a value sealed by SealXattr for the same entry and
// attribute; anything else is ErrBadXattr.
func (t *Transform) OpenXattr(sealed []byte, kind byte, entry []byte, stored string) ([]byte, error) {
	if len(sealed) < XattrOverhead || len(sealed) > XattrValueMax || sealed[0] != xattrVersion || len(entry) > 255 {
		return nil, ErrBadXattr
	}
	pt, err := t.xvalue.Open(nil, sealed[1:], xattrAD(kind, entry, stored))
	if err != nil {
		return nil, ErrBadXattr
	}
	return pt, nil
}
