package fscrypt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tencrypt/tencrypt/keys"
	"golang.org/x/sys/unix"
)

// The metadata file, docs/FSCRYPT.md:
//
//	magic "TFSV" (4) ‖ version 1 (1) ‖ contents mode (1) ‖ filenames mode (1) ‖
//	policy flags (1) ‖ volume ID (16) ‖ key identifier (16) ‖
//	wrapped-key length (BE16) ‖ wrapped-key blob (docs/WRAPPED-KEY.md)
//
// and nothing after it.
const (
	magic         = "TFSV"
	version       = 1
	idSize        = 16
	identSize     = unix.FSCRYPT_KEY_IDENTIFIER_SIZE
	fixedSize     = 4 + 1 + 3 + idSize + identSize + 2
	maxMetadata   = fixedSize + keys.MaxWrappedKeySize
	metadataPerm  = 0o600
	dataDirPerm   = 0o700
	volumeDirPerm = 0o700
)

// Names inside a volume's base directory.
const (
	// MetadataFile holds the volume's wrapped DEK and policy. Its name
	// does not start with "tencrypt.", which volumes of encrypted names
	// reserve (rest/names).
	MetadataFile = "fscrypt.tencrypt"
	// DataDir is the encrypted directory: what a workload sees.
	DataDir = "data"
	// Purpose is the keys purpose of a volume's DEK.
	Purpose = "volume"
)

// The policy every volume gets: v2, AES-256-XTS contents, AES-256-CTS
// names padded to 32 bytes. They are the kernel's recommended default and
// the only pair this kernel has (no Adiantum, no HCTR2 in its crypto API);
// both use the generic AES code, since it has no AES-NI driver.
const (
	ContentsMode  = unix.FSCRYPT_MODE_AES_256_XTS
	FilenamesMode = unix.FSCRYPT_MODE_AES_256_CTS
	PolicyFlags   = unix.FSCRYPT_POLICY_FLAGS_PAD_32
)

// Errors callers branch on; match them with errors.Is.
var (
	// ErrBadMetadata: the metadata file is truncated, has an unknown magic
	// or version, or does not belong to the data directory beside it.
	ErrBadMetadata = errors.New("fscrypt volume metadata is not valid")
	// ErrUnknownVersion: the metadata file is of a version this tencrypt
	// does not know (an error wrapping it wraps ErrBadMetadata too).
	ErrUnknownVersion = errors.New("unknown fscrypt volume metadata version")
	// ErrNotVolume: the directory has no metadata file.
	ErrNotVolume = errors.New("not a tencrypt fscrypt volume")
	// ErrUnsupported: the file system has no encryption support (ext4
	// without the encrypt feature, tmpfs).
	ErrUnsupported = errors.New("the file system does not support fscrypt")
	// ErrNotEmpty: create was asked to take over a directory with entries.
	ErrNotEmpty = errors.New("directory is not empty")
	// ErrAlreadyUnlocked: the volume's key is already in the kernel.
	ErrAlreadyUnlocked = errors.New("volume is already unlocked")
	// ErrWrongKey: the unwrapped key is not the one the directory's policy
	// names (metadata tampered with or taken from another volume).
	ErrWrongKey = errors.New("the volume key does not match the directory's policy")
)

// KeyIdentifier is the kernel's identifier of a master key (a hash of it,
// public: it is in the directory's policy).
type KeyIdentifier [identSize]byte

// String is the identifier in hex, as fscrypt's tools print it.
func (k KeyIdentifier) String() string { return hex.EncodeToString(k[:]) }

// Metadata is one volume's metadata file.
type Metadata struct {
	ContentsMode, FilenamesMode, Flags uint8
	// ID is random per volume: the HKDF salt of its master key.
	ID [idSize]byte
	// Identifier is the key identifier in the data directory's policy.
	Identifier KeyIdentifier
	// Key is the volume's DEK, wrapped under its tenant's KEK.
	Key keys.WrappedKey
}

// MarshalBinary encodes the metadata file.
func (m *Metadata) MarshalBinary() ([]byte, error) {
	wk, err := m.Key.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, fixedSize+len(wk))
	b = append(b, magic...)
	b = append(b, version, m.ContentsMode, m.FilenamesMode, m.Flags)
	b = append(b, m.ID[:]...)
	b = append(b, m.Identifier[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(wk)))
	return append(b, wk...), nil
}

func metadataError(what string, b []byte) error {
	n := min(len(b), fixedSize)
	return fmt.Errorf("%w: %s (header %x)", ErrBadMetadata, what, b[:n])
}

// ParseMetadata parses a metadata file strictly: a wrong magic, an unknown
// version, a policy other than ours, an all-zero ID or identifier, a bad
// wrapped key, a purpose other than Purpose, or bytes left over are errors
// wrapping ErrBadMetadata.
func ParseMetadata(b []byte) (*Metadata, error) {
	switch {
	case len(b) < fixedSize:
		return nil, metadataError(fmt.Sprintf("%d bytes, shorter than the fixed %d", len(b), fixedSize), b)
	case string(b[:4]) != magic:
		return nil, metadataError("no TFSV magic", b)
	case b[4] != version:
		return nil, fmt.Errorf("%w: %w", ErrUnknownVersion, metadataError(fmt.Sprintf("version %d (this tencrypt reads %d: upgrade it)", b[4], version), b))
	}
	m := &Metadata{ContentsMode: b[5], FilenamesMode: b[6], Flags: b[7]}
	if m.ContentsMode != ContentsMode || m.FilenamesMode != FilenamesMode || m.Flags != PolicyFlags {
		return nil, metadataError(fmt.Sprintf("policy modes %d/%d flags %#x, want %d/%d %#x", m.ContentsMode, m.FilenamesMode, m.Flags, ContentsMode, FilenamesMode, PolicyFlags), b)
	}
	copy(m.ID[:], b[8:8+idSize])
	copy(m.Identifier[:], b[8+idSize:8+idSize+identSize])
	if m.ID == ([idSize]byte{}) || m.Identifier == (KeyIdentifier{}) {
		return nil, metadataError("all-zero volume ID or key identifier", b)
	}
	n := int(binary.BigEndian.Uint16(b[fixedSize-2 : fixedSize]))
	if len(b) != fixedSize+n {
		return nil, metadataError(fmt.Sprintf("wrapped key of %d bytes announced, %d present", n, len(b)-fixedSize), b)
	}
	if err := m.Key.UnmarshalBinary(b[fixedSize:]); err != nil {
		return nil, fmt.Errorf("%w: wrapped key: %w", ErrBadMetadata, err)
	}
	if m.Key.Purpose != Purpose {
		return nil, metadataError(fmt.Sprintf("wrapped key for purpose %q, want %q", m.Key.Purpose, Purpose), b)
	}
	return m, nil
}

// IsMetadata reports whether b starts with the metadata file's magic.
func IsMetadata(b []byte) bool { return bytes.HasPrefix(b, []byte(magic)) }

func readMetadata(r io.Reader) (*Metadata, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxMetadata+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetadata {
		return nil, metadataError(fmt.Sprintf("larger than %d bytes", maxMetadata), b)
	}
	return ParseMetadata(b)
}

// ReadMetadata reads the metadata file of the volume at base. A missing
// file is an error wrapping ErrNotVolume. It is never read through a
// symbolic link, nor from anything but a regular file (a FIFO would block).
func ReadMetadata(base string) (*Metadata, error) {
	path := base + "/" + MetadataFile
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: no %s (make one with 'tencrypt volume create --mode fscrypt', or restore the file from a copy of the volume)", base, ErrNotVolume, MetadataFile)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w (it must be a regular file, not a link)", path, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w: not a regular file", path, ErrBadMetadata)
	}
	m, err := readMetadata(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
