package names

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/tencrypt/tencrypt/keys"
)

// VolumeHolder is the keys.Holder of volume configurations: the name key,
// wrapped under the tenant's KEK, base64 in VolumeFile's JSON. It
// recognises VolumeFile by its name, and copies of it under other names by
// their "format" field.
type VolumeHolder struct{}

var _ keys.Holder = VolumeHolder{}

// Kind implements keys.Holder.
func (VolumeHolder) Kind() string { return "volume" }

// Match implements keys.Holder.
func (VolumeHolder) Match(path string, head []byte) bool {
	if filepath.Base(path) == VolumeFile {
		return true
	}
	t := bytes.TrimLeft(head, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && volumeFormatRE.Match(head)
}

// volumeFormatRE finds the format field of a volume configuration.
var volumeFormatRE = regexp.MustCompile(`"format"\s*:\s*"` + regexp.QuoteMeta(VolumeFormat) + `"`)

var _ keys.LinkHolder = VolumeHolder{}

// OwnsLink implements keys.LinkHolder: a symbolic link in a cipher
// directory (one with a DirIVFile) whose target is one component of
// base64url, as EncryptSymlink stores it, is a volume's symlink. Its target
// is encrypted, so it cannot be followed; it holds no wrapped key.
func (VolumeHolder) OwnsLink(path, target string) bool {
	if target == "" || strings.ContainsAny(target, "/=") {
		return false
	}
	if _, err := b64.DecodeString(target); err != nil {
		return false
	}
	fi, err := os.Lstat(filepath.Join(filepath.Dir(path), DirIVFile))
	return err == nil && fi.Mode().IsRegular()
}

// Keys implements keys.Holder: a configuration that does not parse is an
// error wrapping ErrBadVolume.
func (VolumeHolder) Keys(f *os.File) ([]keys.WrappedKey, error) {
	data, err := readVolumeFile(f)
	if err != nil {
		return nil, err
	}
	v, err := ParseVolume(data)
	if err != nil {
		return nil, err
	}
	return []keys.WrappedKey{v.NameKey}, nil
}

func readVolumeFile(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxVolumeFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxVolumeFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadVolume, maxVolumeFile)
	}
	return data, nil
}

// Rewrap implements keys.Holder. The new name key is checked to unwrap to
// the same DEK (the volume's names depend on it) and replaces the old one
// in the JSON; every other field is kept as it is. The file is replaced
// atomically, keeping its mode. A mounted volume keeps working: the name
// key itself does not change, only its wrapping.
func (VolumeHolder) Rewrap(ctx context.Context, path string, m *keys.Mover) ([]keys.Moved, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	data, err := readVolumeFile(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v, err := ParseVolume(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	wk := v.NameKey
	mv := keys.Moved{File: path, Tenant: wk.Tenant, Purpose: wk.Purpose, From: wk.KEKVersion}
	stale, cur, err := m.Stale(ctx, wk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !stale {
		mv.Status, mv.To = keys.StatusCurrent, cur
		return []keys.Moved{mv}, nil
	}
	nwk, err := m.RewrapVerified(ctx, wk, Purpose)
	if err != nil {
		return nil, fmt.Errorf("%s: the volume's name key: %w", path, err)
	}
	out, err := withNameKey(data, nwk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := keys.ReplaceFile(path, out); err != nil {
		return nil, fmt.Errorf("%s: write the rewrapped configuration: %w (the file is unchanged)", path, err)
	}
	mv.Status, mv.To, mv.Method = keys.StatusRewrapped, nwk.KEKVersion, "replace"
	return []keys.Moved{mv}, nil
}

// withNameKey returns the configuration data with its name_key replaced by
// wk, every other field unchanged, and checks that the result parses to
// the same volume.
func withNameKey(data []byte, wk keys.WrappedKey) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadVolume, err)
	}
	blob, err := wk.MarshalBinary()
	if err != nil {
		return nil, err
	}
	// encoding/json matches field names without regard to case: drop every
	// spelling, so the new key is the only one.
	for k := range fields {
		if strings.EqualFold(k, "name_key") {
			delete(fields, k)
		}
	}
	if fields["name_key"], err = json.Marshal(base64.StdEncoding.EncodeToString(blob)); err != nil {
		return nil, err
	}
	out, err := json.MarshalIndent(fields, "", "  ")
	if err != nil {
		return nil, err
	}
	out = append(out, '\n')
	before, err := ParseVolume(data)
	if err != nil {
		return nil, err
	}
	after, err := ParseVolume(out)
	if err != nil {
		return nil, fmt.Errorf("the rewrapped configuration would not parse (duplicate fields?); it was not written: %w", err)
	}
	if after.ID != before.ID || after.Tenant != before.Tenant || !after.Created.Equal(before.Created) || after.NameKey.KEKVersion != wk.KEKVersion {
		return nil, fmt.Errorf("%w: the rewrapped configuration would differ in more than its name key (duplicate fields?); it was not written", ErrBadVolume)
	}
	return out, nil
}

// MetadataHolder is the keys.Holder of a volume's other metadata files,
// which hold no wrapped key: directory IVs (DirIVFile) and long names'
// sidecars. It lets a strict check (keys retire --strict) account for
// every file of a volume.
type MetadataHolder struct{}

var _ keys.Holder = MetadataHolder{}

// Kind implements keys.Holder.
func (MetadataHolder) Kind() string { return "volume-metadata" }

// Match implements keys.Holder: by name. Besides IV files and sidecars, a
// crash can leave a pending IV file or a temporary entry behind; a
// temporary entry that holds a tencrypt file is matched by that file's
// holder first, by its magic.
func (MetadataHolder) Match(path string, _ []byte) bool {
	base := filepath.Base(path)
	return IsSidecar(base) || (IsReserved(base) && base != VolumeFile)
}

// Keys implements keys.Holder: none.
func (MetadataHolder) Keys(*os.File) ([]keys.WrappedKey, error) { return nil, nil }

// Rewrap implements keys.Holder: nothing to move.
func (MetadataHolder) Rewrap(context.Context, string, *keys.Mover) ([]keys.Moved, error) {
	return nil, nil
}
