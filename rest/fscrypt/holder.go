package fscrypt

import (
	"context"
	"fmt"
	"os"

	"github.com/tencrypt/tencrypt/keys"
)

// Holder is the keys.Holder of volume metadata files (MetadataFile, or a
// copy under any name): one wrapped DEK, recognised by the magic.
type Holder struct{}

var (
	_ keys.Holder          = Holder{}
	_ keys.KeyOffsetHolder = Holder{}
)

// Kind implements keys.Holder.
func (Holder) Kind() string { return "fscrypt-volume" }

// Match implements keys.Holder.
func (Holder) Match(_ string, head []byte) bool { return IsMetadata(head) }

// KeyOffset implements keys.KeyOffsetHolder: the blob follows the fixed
// fields.
func (Holder) KeyOffset() int64 { return fixedSize }

// Keys implements keys.Holder.
func (Holder) Keys(f *os.File) ([]keys.WrappedKey, error) {
	m, err := readMetadata(f)
	if err != nil {
		return nil, err
	}
	return []keys.WrappedKey{m.Key}, nil
}

// Rewrap implements keys.Holder. The new wrapping is checked to hold the
// same DEK (the volume's master key depends on it), then the file is
// replaced atomically with every other field unchanged, keeping its mode.
// An unlocked volume stays unlocked: the key itself does not change.
func (Holder) Rewrap(ctx context.Context, path string, mv *keys.Mover) ([]keys.Moved, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := readMetadata(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	wk := m.Key
	res := keys.Moved{File: path, Tenant: wk.Tenant, Purpose: wk.Purpose, From: wk.KEKVersion}
	stale, cur, err := mv.Stale(ctx, wk)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !stale {
		res.Status, res.To = keys.StatusCurrent, cur
		return []keys.Moved{res}, nil
	}
	if m.Key, err = mv.RewrapVerified(ctx, wk, Purpose); err != nil {
		return nil, fmt.Errorf("%s: the volume key: %w", path, err)
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := keys.ReplaceFile(path, b); err != nil {
		return nil, fmt.Errorf("%s: write the rewrapped metadata: %w (the file is unchanged)", path, err)
	}
	res.Status, res.To, res.Method = keys.StatusRewrapped, m.Key.KEKVersion, "replace"
	return []keys.Moved{res}, nil
}
