package keys

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
)

// BlobHolder is the Holder of wrapped-key blob files: a file that is one
// blob, nothing before or after (docs/WRAPPED-KEY.md).
type BlobHolder struct{}

var (
	_ Holder          = BlobHolder{}
	_ KeyOffsetHolder = BlobHolder{}
)

// Kind implements Holder.
func (BlobHolder) Kind() string { return "blob" }

// Match implements Holder: the file starts with the blob's magic.
func (BlobHolder) Match(_ string, head []byte) bool { return IsWrappedKey(head) }

// KeyOffset implements KeyOffsetHolder: the file is the blob.
func (BlobHolder) KeyOffset() int64 { return 0 }

// Keys implements Holder.
func (BlobHolder) Keys(f *os.File) ([]WrappedKey, error) {
	wk, err := readBlob(f)
	if err != nil {
		return nil, err
	}
	return []WrappedKey{wk}, nil
}

// ReadBlobFile reads the wrapped-key blob file at path, strictly.
func ReadBlobFile(path string) (WrappedKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return WrappedKey{}, err
	}
	defer f.Close()
	wk, err := readBlob(f)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return wk, nil
}

func readBlob(r io.Reader) (WrappedKey, error) {
	var wk WrappedKey
	b, err := io.ReadAll(io.LimitReader(r, MaxWrappedKeySize+1))
	if err != nil {
		return wk, err
	}
	err = wk.UnmarshalBinary(b)
	return wk, err
}

// Rewrap implements Holder: the new blob replaces the file atomically
// (temporary file, fsync, rename), keeping its mode. The blob is not
// verified by a second unwrap (no container seal depends on it; the
// backend authenticated the rewrap).
func (BlobHolder) Rewrap(ctx context.Context, path string, m *Mover) ([]Moved, error) {
	wk, err := ReadBlobFile(path)
	if err != nil {
		return nil, err
	}
	mv := Moved{File: path, Tenant: wk.Tenant, Purpose: wk.Purpose, From: wk.KEKVersion}
	stale, cur, err := m.Stale(ctx, wk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !stale {
		mv.Status, mv.To = StatusCurrent, cur
		return []Moved{mv}, nil
	}
	nwk, err := m.Rewrap(ctx, wk, wk.Purpose)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := nwk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := ReplaceFile(path, b); err != nil {
		return nil, fmt.Errorf("%s: write the rewrapped key: %w (the file is unchanged)", path, err)
	}
	mv.Status, mv.To, mv.Method = StatusRewrapped, nwk.KEKVersion, "replace"
	return []Moved{mv}, nil
}

// ReplaceFile writes data over the regular file at path atomically,
// keeping its permission bits (internal/atomicfile): a crash leaves the old
// or the new content.
func ReplaceFile(path string, data []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data, atomicfile.Options{Perm: fi.Mode().Perm(), Replace: true})
}
