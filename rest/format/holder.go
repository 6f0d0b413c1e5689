package format

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/keys"
)

// Holder is the keys.Holder of tencrypt files: the file key wrapped in the
// header. Copy makes Rewrap always rewrite the file through a temporary
// file, never in place.
type Holder struct {
	Copy bool
}

var _ keys.Holder = Holder{}

// Kind implements keys.Holder.
func (Holder) Kind() string { return "file" }

// Match implements keys.Holder: the file starts with Magic.
func (Holder) Match(_ string, head []byte) bool { return bytes.HasPrefix(head, []byte(Magic)) }

// KeyOffset implements keys.KeyOffsetHolder: the wrapped key follows the
// header's fixed fields (docs/FORMAT.md).
func (Holder) KeyOffset() int64 { return fixedSize }

// Keys implements keys.Holder. The header is parsed, not unsealed (that
// needs the key).
func (Holder) Keys(f *os.File) ([]keys.WrappedKey, error) {
	h, err := ReadHeader(f)
	if err != nil {
		return nil, err
	}
	return []keys.WrappedKey{h.Key}, nil
}

// Rewrap implements keys.Holder through Rewrap, which checks the old
// header's seal and that the new wrapped key holds the same DEK before
// anything is written. A new header of the old one's size (the usual case:
// same backend and tenant) is written in place over the first bytes of the
// file and synced: one write of a few hundred bytes inside the first disk
// sector. Otherwise, or with Copy, the file is rewritten through a
// temporary file that is synced and renamed over it (internal/atomicfile),
// so a crash leaves the old or the new file.
func (ho Holder) Rewrap(ctx context.Context, path string, m *keys.Mover) ([]keys.Moved, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := ReadHeader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	mv := keys.Moved{File: path, Tenant: h.Key.Tenant, Purpose: h.Key.Purpose, From: h.Key.KEKVersion}
	stale, cur, err := m.Stale(ctx, h.Key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !stale {
		mv.Status, mv.To = keys.StatusCurrent, cur
		return []keys.Moved{mv}, nil
	}
	unwrap := func(wk keys.WrappedKey) (keys.DEK, error) { return m.Unwrap(ctx, wk, Purpose) }
	nh, err := Rewrap(h, unwrap, func(wk keys.WrappedKey) (keys.WrappedKey, error) {
		return m.Rewrap(ctx, wk, Purpose)
	}, WithPath(path))
	if err != nil {
		return nil, err
	}
	mv.Status, mv.To = keys.StatusRewrapped, nh.Key.KEKVersion
	if nh.Size() == h.Size() && !ho.Copy {
		if _, err := f.WriteAt(nh.Bytes(), 0); err != nil {
			return nil, fmt.Errorf("%s: write the new header: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		mv.Method = "in-place"
		return []keys.Moved{mv}, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	err = atomicfile.WriteFunc(path, atomicfile.Options{Perm: fi.Mode().Perm(), Replace: true}, func(w io.Writer) error {
		if _, err := w.Write(nh.Bytes()); err != nil {
			return err
		}
		_, err := io.Copy(w, io.NewSectionReader(f, int64(h.Size()), fi.Size()-int64(h.Size())))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w (the file is unchanged)", path, err)
	}
	mv.Method = "copy"
	return []keys.Moved{mv}, nil
}
