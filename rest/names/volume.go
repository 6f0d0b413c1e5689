package names

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/keys"
)

// Volume configuration (docs/NAMES.md).
const (
	// VolumeFile is the volume configuration at the cipher directory's root.
	VolumeFile = "tencrypt.volume"
	// VolumeFormat is the "format" field of every volume configuration.
	VolumeFormat = "tencrypt-volume"
	// VolumeVersion is the volume format this package reads and writes:
	// 2, with directory IDs bound to their place and authenticated names
	// (docs/NAMES.md).
	VolumeVersion = 2
	// volumeVersion1 is the first format, refused with ErrVolumeV1.
	volumeVersion1 = 1
	// Purpose is the keys purpose of a volume's name DEK.
	Purpose = "fs-names"
	// VolumeIDSize is the size of the random volume ID (the HKDF salt of the
	// name keys).
	VolumeIDSize  = 16
	maxVolumeFile = 64 << 10
)

// Errors of the volume configuration.
var (
	// ErrNoVolume: the directory has no volume configuration.
	ErrNoVolume = errors.New("not a tencrypt volume (no " + VolumeFile + "): create one with 'tencrypt volume init CIPHERDIR --tenant TENANT'")
	// ErrBadVolume: the configuration is malformed or of an unknown version.
	ErrBadVolume = errors.New("malformed or unknown " + VolumeFile + ": the volume is damaged or needs a newer tencrypt")
	// ErrVolumeV1: the volume is of format 1, whose directory IVs and
	// names were not authenticated (docs/NAMES.md, "Format 1"). It also
	// matches ErrBadVolume.
	ErrVolumeV1 error = volumeV1Error{}
	// ErrVolumeExists: init found a volume configuration already.
	ErrVolumeExists = errors.New("the directory is a tencrypt volume already")
)

type volumeV1Error struct{}

func (volumeV1Error) Error() string {
	return "volume format 1 is no longer supported (its directory IVs and names were not authenticated): " +
		"mount it with a tencrypt built before volume format 2 (docs/NAMES.md), create a new volume with this one " +
		"('tencrypt volume init NEWDIR --tenant TENANT'), mount both and copy the files across (cp -a), then remove the old cipher directory"
}

// Is makes ErrVolumeV1 match ErrBadVolume, so callers that map
// ErrBadVolume (to an exit code) need not know it.
func (volumeV1Error) Is(target error) bool { return target == ErrBadVolume }

// Volume is the configuration of a cipher directory: which tenant owns it
// and its name key, wrapped under the tenant's KEK.
type Volume struct {
	ID      [VolumeIDSize]byte
	Tenant  string
	NameKey keys.WrappedKey
	Created time.Time
}

// volumeJSON is the file's encoding.
type volumeJSON struct {
	Format   string `json:"format"`
	Version  int    `json:"version"`
	VolumeID string `json:"volume_id"`
	Tenant   string `json:"tenant"`
	NameKey  string `json:"name_key"`
	Created  string `json:"created"`
}

// InitVolume makes dir (created if missing; if it exists it must be empty)
// a volume of tenant: a fresh name DEK wrapped under the tenant's current
// KEK in VolumeFile, written atomically, and the root's DirIVFile, which
// seals the root's ID under a key derived from the name DEK.
func InitVolume(ctx context.Context, dir string, env *keys.Envelope, tenant string, now time.Time) (*Volume, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the cipher directory: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if e.Name() == VolumeFile {
			return nil, fmt.Errorf("%s: %w", dir, ErrVolumeExists)
		}
	}
	if len(ents) > 0 {
		return nil, fmt.Errorf("%s is not empty: a volume is initialised in an empty (or new) directory", dir)
	}
	dek, wk, err := env.NewDEK(ctx, tenant, Purpose)
	if err != nil {
		return nil, err
	}
	v := &Volume{Tenant: tenant, NameKey: wk, Created: now.UTC().Truncate(time.Second)}
	_, _ = rand.Read(v.ID[:])
	tr, err := NewTransform(&dek, v.ID[:])
	dek.Zero()
	if err != nil {
		return nil, err
	}
	data, err := v.Marshal()
	if err != nil {
		return nil, err
	}
	fd, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if _, err := tr.CreateDirIV(fd, RootLoc()); err != nil {
		return nil, err
	}
	if err := atomicfile.Write(filepath.Join(dir, VolumeFile), data, atomicfile.Options{Perm: 0o400}); err != nil {
		_ = RemoveDirIV(fd)
		return nil, fmt.Errorf("write the volume configuration: %w", err)
	}
	return v, nil
}

// Marshal encodes v as the JSON of VolumeFile.
func (v *Volume) Marshal() ([]byte, error) {
	blob, err := v.NameKey.MarshalBinary()
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(volumeJSON{
		Format: VolumeFormat, Version: VolumeVersion,
		VolumeID: hex.EncodeToString(v.ID[:]), Tenant: v.Tenant,
		NameKey: base64.StdEncoding.EncodeToString(blob),
		Created: v.Created.UTC().Format(time.RFC3339),
	}, "", "  ")
	return append(b, '\n'), err
}

// ParseVolume decodes and checks a VolumeFile.
func ParseVolume(data []byte) (*Volume, error) {
	var j volumeJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadVolume, err)
	}
	if j.Format != VolumeFormat {
		return nil, fmt.Errorf("%w: format %q, want %q", ErrBadVolume, j.Format, VolumeFormat)
	}
	if j.Version == volumeVersion1 {
		return nil, ErrVolumeV1
	}
	if j.Version != VolumeVersion {
		return nil, fmt.Errorf("%w: version %d, this tencrypt reads %d", ErrBadVolume, j.Version, VolumeVersion)
	}
	v := &Volume{Tenant: j.Tenant}
	id, err := hex.DecodeString(j.VolumeID)
	if err != nil || len(id) != VolumeIDSize {
		return nil, fmt.Errorf("%w: volume_id is not %d hex bytes", ErrBadVolume, VolumeIDSize)
	}
	copy(v.ID[:], id)
	if err := keys.ValidTenant(j.Tenant); err != nil {
		return nil, fmt.Errorf("%w: tenant: %w", ErrBadVolume, err)
	}
	blob, err := base64.StdEncoding.DecodeString(j.NameKey)
	if err != nil {
		return nil, fmt.Errorf("%w: name_key is not base64", ErrBadVolume)
	}
	if err := v.NameKey.UnmarshalBinary(blob); err != nil {
		return nil, fmt.Errorf("%w: name_key: %w", ErrBadVolume, err)
	}
	if v.NameKey.Tenant != v.Tenant || v.NameKey.Purpose != Purpose {
		return nil, fmt.Errorf("%w: name_key is for tenant %q purpose %q, not tenant %q purpose %q", ErrBadVolume, v.NameKey.Tenant, v.NameKey.Purpose, v.Tenant, Purpose)
	}
	if v.Created, err = time.Parse(time.RFC3339, j.Created); err != nil {
		return nil, fmt.Errorf("%w: created: %w", ErrBadVolume, err)
	}
	return v, nil
}

// LoadVolume reads the volume configuration of the cipher directory dir.
// The file must be a regular file (a symlink planted there is not
// followed, a FIFO does not block) of at most 64 KiB.
func LoadVolume(dir string) (*Volume, error) {
	fd, err := openDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoVolume)
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	data, err := readMeta(fd, VolumeFile, maxVolumeFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, ErrNoVolume)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", filepath.Join(dir, VolumeFile), ErrBadVolume, err)
	}
	v, err := ParseVolume(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, VolumeFile), err)
	}
	return v, nil
}

// Transform unwraps the volume's name key through env (audited as caller)
// and returns the volume's name transform.
func (v *Volume) Transform(ctx context.Context, env *keys.Envelope, caller string) (*Transform, error) {
	dek, err := env.Unwrap(ctx, v.NameKey, Purpose, caller)
	if err != nil {
		return nil, fmt.Errorf("unwrap the volume's name key: %w", err)
	}
	defer dek.Zero()
	return NewTransform(&dek, v.ID[:])
}
