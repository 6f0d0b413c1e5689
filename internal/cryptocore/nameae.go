package cryptocore

import (
	"crypto/subtle"
	"fmt"
)

// HKDF labels of the encrypted-name volume, format 2 (docs/NAMES.md). The
// salt is the volume ID. Changing one changes the on-disk format; format 1
// used "tencrypt names v1 ..." labels, so no key is shared across formats.
const (
	// LabelNamesEME derives the EME key that encrypts file and directory
	// names (enciphered with redundancy, NameAE) from the volume's name DEK.
	LabelNamesEME = "tencrypt names v2 EME file names"
	// LabelNamesDirID derives the XChaCha20-Poly1305 key that seals each
	// directory's ID in its IV file, bound to where the directory is.
	LabelNamesDirID = "tencrypt names v2 directory ID"
	// LabelNamesSymlink derives the XChaCha20-Poly1305 key that seals
	// symbolic link targets, bound to their entry.
	LabelNamesSymlink = "tencrypt names v2 symlink targets"
	// LabelNamesXattrName derives the EME key that encrypts the names of
	// user extended attributes (NameAE under a fixed tweak).
	LabelNamesXattrName = "tencrypt names v2 xattr names"
	// LabelNamesXattrValue derives the XChaCha20-Poly1305 key that seals
	// user extended attribute values, bound to their entry and name.
	LabelNamesXattrValue = "tencrypt names v2 xattr values"
)

// NameAERedundancy is the number of zero bytes NameAE adds before
// enciphering and checks after deciphering: the forgery bound is about
// 2^-128 per attempt.
const NameAERedundancy = EMEBlockSize

// NameAE is deterministic authenticated encryption by enciphering with
// redundancy ("encode-then-encipher", Bellare and Rogaway, ASIACRYPT 2000;
// the construction behind AEZ, Hoang, Krovetz and Rogaway, EUROCRYPT
// 2015): the input and NameAERedundancy zero bytes are enciphered
// together with EME, a tweakable strong pseudorandom permutation
// (Halevi and Rogaway, CT-RSA 2004). Deciphering anything that was not
// enciphered under the same key and tweak gives a (pseudo)random string,
// whose last block is all zeros with probability about 2^-128: so a name
// moved to another directory (another tweak), edited or forged is
// rejected, not merely garbled. Equal inputs under equal tweaks give equal
// outputs (names must be found by lookup), which is all it reveals. No
// new primitive: EME as before, and a comparison. Safe for concurrent use.
type NameAE struct {
	eme *EME
}

// NewNameAE returns NameAE under k; the caller may zero k afterwards.
func NewNameAE(k *Key) (*NameAE, error) {
	e, err := NewEME(k)
	if err != nil {
		return nil, err
	}
	return &NameAE{eme: e}, nil
}

// NameAEMaxInput is the longest input Seal takes: EME's maximum less the
// redundancy block.
const NameAEMaxInput = EMEMaxSize - NameAERedundancy

// Seal enciphers in ‖ 0^16 under tweak and returns the result in a new
// slice (len(in)+NameAERedundancy bytes). in must be a non-zero multiple
// of EMEBlockSize, at most NameAEMaxInput; tweak is EMETweakSize bytes.
func (a *NameAE) Seal(tweak, in []byte) ([]byte, error) {
	if len(in) == 0 || len(in) > NameAEMaxInput {
		return nil, fmt.Errorf("cryptocore: NameAE input of %d bytes, want 1 to %d", len(in), NameAEMaxInput)
	}
	buf := make([]byte, len(in)+NameAERedundancy)
	copy(buf, in)
	return a.eme.Encrypt(tweak, buf)
}

// Open deciphers ct under tweak and checks the redundancy. It returns the
// input given to Seal, in a new slice, or ErrAuth for anything that was
// not sealed under this key and tweak (of a valid length or not).
func (a *NameAE) Open(tweak, ct []byte) ([]byte, error) {
	if len(ct) < EMEBlockSize+NameAERedundancy {
		return nil, ErrAuth
	}
	pt, err := a.eme.Decrypt(tweak, ct)
	if err != nil {
		return nil, ErrAuth
	}
	var zero [NameAERedundancy]byte
	if subtle.ConstantTimeCompare(pt[len(pt)-NameAERedundancy:], zero[:]) != 1 {
		return nil, ErrAuth
	}
	return pt[:len(pt)-NameAERedundancy], nil
}
