// Package fscrypt makes tenant volumes out of the kernel's file-system
// encryption (fscrypt, v2 policies): a base directory holding an encrypted
// data directory and a small metadata file with the volume's DEK, wrapped
// under its tenant's KEK. The fscrypt master key is derived from the DEK
// (internal/cryptocore, LabelFscryptMasterKey), handed to the kernel on
// Unlock and zeroed; it is never stored. A copy of the base directory and
// access to the tenant's KEK unlock it anywhere. The format and what a copy
// reveals are in docs/FSCRYPT.md. It talks to the kernel through ioctls
// only: no fscrypt tool is needed.
package fscrypt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// Volumes creates and unlocks fscrypt volumes with one envelope; caller
// names the process in the envelope's audit records of each unwrap.
type Volumes struct {
	env    *keys.Envelope
	caller string
}

// New returns Volumes over env.
func New(env *keys.Envelope, caller string) *Volumes {
	return &Volumes{env: env, caller: caller}
}

// masterKey derives the volume's fscrypt master key from its DEK. The
// caller zeroes it.
func masterKey(dek *keys.DEK, id [idSize]byte) cryptocore.WideKey {
	return cryptocore.DeriveWideKey(dek, id[:], cryptocore.LabelFscryptMasterKey)
}

// prepareBase makes base, or checks that it is an empty directory, and
// reports whether it made it.
func prepareBase(base string) (bool, error) {
	err := os.Mkdir(base, volumeDirPerm)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return false, err
	}
	ents, err := os.ReadDir(base)
	if err != nil {
		return false, err
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("%s: %w (%d entries): create a volume in a new or empty directory; nothing was changed", base, ErrNotEmpty, len(ents))
	}
	return false, nil
}

// Create makes base (or takes the empty directory base) a volume of
// tenant: a fresh DEK wrapped under the tenant's current KEK, the data
// directory with a v2 policy under the key derived from it, and the
// metadata file, written atomically last. The volume is left locked. On
// any error what Create made is removed again and nothing else is touched.
func (v *Volumes) Create(ctx context.Context, base, tenant string) (_ *Metadata, err error) {
	made, err := prepareBase(base)
	if err != nil {
		return nil, err
	}
	dir, err := os.Open(base)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	data := filepath.Join(base, DataDir)
	defer func() {
		if err != nil {
			os.Remove(data)
			if made {
				os.Remove(base)
			}
		}
	}()
	if p, err := getPolicy(dir); err != nil || p != nil {
		if err == nil {
			err = fmt.Errorf("%w: it is inside an encrypted directory already; choose a directory outside it", ErrNotEmpty)
		}
		return nil, fmt.Errorf("%s: %w", base, err)
	}
	dek, wk, err := v.env.NewDEK(ctx, tenant, Purpose)
	if err != nil {
		return nil, err
	}
	m := &Metadata{ContentsMode: ContentsMode, FilenamesMode: FilenamesMode, Flags: PolicyFlags, Key: wk}
	_, _ = rand.Read(m.ID[:])
	mk := masterKey(&dek, m.ID)
	dek.Zero()
	m.Identifier, err = addKey(dir, &mk)
	mk.Zero()
	if err != nil {
		return nil, fmt.Errorf("%s: add the new volume's key: %w", base, err)
	}
	// The volume is left locked: the key goes again whatever happens next.
	defer removeKey(dir, m.Identifier)
	if err := makeDataDir(data, m.Identifier); err != nil {
		return nil, err
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(base, MetadataFile), b, atomicfile.Options{Perm: metadataPerm}); err != nil {
		return nil, fmt.Errorf("%s: write the volume metadata: %w", base, err)
	}
	return m, nil
}

func makeDataDir(data string, id KeyIdentifier) error {
	if err := os.Mkdir(data, dataDirPerm); err != nil {
		return err
	}
	d, err := os.Open(data)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := setPolicy(d, id); err != nil {
		return fmt.Errorf("%s: set the encryption policy: %w", data, err)
	}
	return nil
}

// open reads the volume's metadata and its data directory's policy, and
// checks they agree. The caller closes the returned base directory.
func open(base string) (*Metadata, *os.File, error) {
	m, err := ReadMetadata(base)
	if err != nil {
		return nil, nil, err
	}
	d, err := os.Open(filepath.Join(base, DataDir))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: the encrypted data directory: %w", base, err)
	}
	p, err := getPolicy(d)
	d.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", base, err)
	}
	switch {
	case p == nil:
		return nil, nil, fmt.Errorf("%s: %w: %s is not encrypted", base, ErrBadMetadata, DataDir)
	case p.contents != m.ContentsMode || p.filenames != m.FilenamesMode || p.flags != m.Flags || p.identifier != m.Identifier:
		return nil, nil, fmt.Errorf("%s: %w: it names key %s, the data directory's policy key %s: the metadata file belongs to another volume or was changed; restore it from a copy", base, ErrBadMetadata, m.Identifier, p.identifier)
	}
	dir, err := os.Open(base)
	if err != nil {
		return nil, nil, err
	}
	return m, dir, nil
}

// Unlock adds the volume's key to the kernel, for every process to see its
// files in plaintext. It unwraps the DEK (audited), derives the master key,
// checks that its identifier is the one the directory's policy names before
// the kernel sees it, adds it and zeroes it. A key already present is
// ErrAlreadyUnlocked, and nothing is changed.
func (v *Volumes) Unlock(ctx context.Context, base string) (*Metadata, error) {
	m, dir, err := open(base)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	st, err := getKeyStatus(dir, m.Identifier)
	if err != nil {
		return nil, fmt.Errorf("%s: key status: %w", base, err)
	}
	if st.status == unix.FSCRYPT_KEY_STATUS_PRESENT {
		return nil, fmt.Errorf("%s: %w (key %s): lock it first to unlock it again", base, ErrAlreadyUnlocked, m.Identifier)
	}
	dek, err := v.env.Unwrap(ctx, m.Key, Purpose, v.caller)
	if err != nil {
		return nil, fmt.Errorf("%s: unwrap the volume key: %w", base, err)
	}
	mk := masterKey(&dek, m.ID)
	dek.Zero()
	defer mk.Zero()
	// The key must be the one the policy names before the kernel sees it: a
	// metadata file carrying another volume's wrapped key would otherwise
	// add (and, on a mismatch, remove) that other volume's key.
	if KeyIdentifier(cryptocore.FscryptKeyIdentifier(&mk)) != m.Identifier {
		return nil, fmt.Errorf("%s: %w: the metadata file was changed or belongs to another volume; restore it from a copy", base, ErrWrongKey)
	}
	id, err := addKey(dir, &mk)
	if err != nil {
		return nil, fmt.Errorf("%s: add the volume key: %w", base, err)
	}
	if id != m.Identifier {
		// Only a kernel that derives identifiers differently gets here; the
		// key just added is the policy's, so taking it out again is safe.
		removeKey(dir, id)
		return nil, fmt.Errorf("%s: %w: the kernel named the key %s, the policy %s", base, ErrWrongKey, id, m.Identifier)
	}
	return m, nil
}

// LockResult reports what Lock did.
type LockResult struct {
	// WasUnlocked is false when the key was not in the kernel: nothing to do.
	WasUnlocked bool `json:"was_unlocked"`
	// FilesBusy: files of the volume are still open. Their contents stay
	// readable through the open descriptors until they are closed; lock
	// again then to finish.
	FilesBusy bool `json:"files_busy"`
	// OtherUsers: other users added the key too and keep it in the kernel.
	OtherUsers bool `json:"other_users"`
}

// Lock removes the volume's key from the kernel: the kernel evicts its
// files' cached plaintext, so the data directory shows encrypted names and
// refuses contents. Files still in use are reported, not an error. It
// takes the key identifier from the data directory's policy, so that a
// volume whose metadata file was damaged while it was unlocked can still
// be locked.
func Lock(base string) (LockResult, error) {
	var res LockResult
	d, err := os.Open(filepath.Join(base, DataDir))
	if errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("%s: %w: no %s directory", base, ErrNotVolume, DataDir)
	}
	if err != nil {
		return res, err
	}
	p, err := getPolicy(d)
	// An open descriptor of the data directory would keep the key busy:
	// the removal goes through the base directory.
	d.Close()
	if err != nil {
		return res, fmt.Errorf("%s: %w", base, err)
	}
	if p == nil {
		return res, fmt.Errorf("%s: %w: %s is not encrypted", base, ErrNotVolume, DataDir)
	}
	dir, err := os.Open(base)
	if err != nil {
		return res, err
	}
	defer dir.Close()
	flags, err := removeKey(dir, p.identifier)
	if errors.Is(err, unix.ENOKEY) {
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("%s: remove the volume key: %w", base, unsupported(err))
	}
	res.WasUnlocked = true
	res.FilesBusy = flags&unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_FILES_BUSY != 0
	res.OtherUsers = flags&unix.FSCRYPT_KEY_REMOVAL_STATUS_FLAG_OTHER_USERS != 0
	return res, nil
}

// Status describes a volume; it holds no secret.
type Status struct {
	Tenant     string `json:"tenant"`
	KEKVersion uint32 `json:"kek_version"`
	Provider   string `json:"provider"`
	VolumeID   string `json:"volume_id"`
	// KeyIdentifier is the master key's identifier (public).
	KeyIdentifier string `json:"key_identifier"`
	Contents      string `json:"contents"`
	Filenames     string `json:"filenames"`
	// State is "locked", "unlocked" or "incompletely-removed" (locked, but
	// files still in use keep the key).
	State string `json:"state"`
	// Users is how many users added the key.
	Users uint32 `json:"users"`
}

// States of Status.
const (
	StateLocked              = "locked"
	StateUnlocked            = "unlocked"
	StateIncompletelyRemoved = "incompletely-removed"
)

// ReadStatus reads the volume's metadata and its key's status in the kernel.
func ReadStatus(base string) (Status, error) {
	m, dir, err := open(base)
	if err != nil {
		return Status{}, err
	}
	defer dir.Close()
	st, err := getKeyStatus(dir, m.Identifier)
	if err != nil {
		return Status{}, fmt.Errorf("%s: key status: %w", base, err)
	}
	s := Status{
		Tenant: m.Key.Tenant, KEKVersion: m.Key.KEKVersion, Provider: m.Key.Provider,
		VolumeID: fmt.Sprintf("%x", m.ID), KeyIdentifier: m.Identifier.String(),
		Contents: "AES-256-XTS", Filenames: "AES-256-CTS", Users: st.users, State: StateLocked,
	}
	switch st.status {
	case unix.FSCRYPT_KEY_STATUS_PRESENT:
		s.State = StateUnlocked
	case unix.FSCRYPT_KEY_STATUS_INCOMPLETELY_REMOVED:
		s.State = StateIncompletelyRemoved
	}
	return s, nil
}
