package keys

import (
	"context"
	"fmt"
	"os"
	"sync"
)

// Holder is one kind of file that stores wrapped keys: wrapped-key blob
// files (BlobHolder, here), tencrypt file headers (rest/format), a volume's
// configuration (rest/names), the lab's transit registry (lab). Each lives
// in the package that owns the format; the list of all of them is put
// together in one place (internal/keyholders) so that the retire check
// (CheckRetire) and the rewrap command (RewrapPaths) see every wrapped key
// tencrypt writes. To add a container, implement Holder beside its format
// and add it to that list.
type Holder interface {
	// Kind names the container in reports, e.g. "blob", "file", "volume".
	Kind() string
	// Match reports whether the file at path, whose first bytes are head
	// (at most HeadSize, the whole file when shorter), is of this kind. It
	// does no I/O. A match makes the holder answer for the file: if Keys
	// then fails, the scan fails (fail closed).
	Match(path string, head []byte) bool
	// Keys returns every wrapped key in the file f, open for reading at
	// offset 0. A file that matched but cannot be parsed is an error.
	Keys(f *os.File) ([]WrappedKey, error)
	// Rewrap moves every wrapped key of the regular file at path (links
	// already resolved) that m.Stale reports to its tenant's current KEK
	// version, all of the file's keys or none: after an error or a crash
	// the file holds its old keys or its new ones, whole. It returns one
	// Moved per key, current ones included.
	Rewrap(ctx context.Context, path string, m *Mover) ([]Moved, error)
}

// KeyOffsetHolder is implemented by a Holder whose files hold one wrapped
// key at a fixed byte offset (a blob file: 0; a tencrypt file: after its
// header's fixed fields); Scan reports it as KeyRef.Offset.
type KeyOffsetHolder interface {
	KeyOffset() int64
}

// LinkHolder is implemented by a Holder whose containers keep symbolic
// links that are data, not links to follow: a volume's symlinks, stored
// with encrypted targets. The scan skips a link that cannot be followed
// when OwnsLink returns true for it, instead of failing. OwnsLink may look
// at the link's directory (one lstat).
type LinkHolder interface {
	OwnsLink(path, target string) bool
}

// Moved reports one wrapped key that Holder.Rewrap looked at.
type Moved struct {
	File    string `json:"file"`
	Kind    string `json:"kind"`
	Tenant  string `json:"tenant,omitempty"`
	Purpose string `json:"purpose,omitempty"`
	From    uint32 `json:"from_version,omitempty"`
	To      uint32 `json:"to_version,omitempty"`
	// Status is "rewrapped", "current" (already at the current version) or
	// "error".
	Status string `json:"status"`
	// Method says how the file was changed: "in-place" (only a header's
	// bytes were rewritten and synced), "copy" (a large file rewritten
	// through a synced temporary file renamed over it) or "replace" (a small
	// file replaced the same way). Empty when nothing was written.
	Method string `json:"method,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Status values of Moved.
const (
	StatusRewrapped = "rewrapped"
	StatusCurrent   = "current"
	StatusError     = "error"
)

// Mover is what a Holder moves keys with: the envelope (so every unwrap
// and rewrap is audited), the caller named in the audit log, and each
// tenant's current version, asked of the backend once per tenant. It is
// safe for concurrent use.
type Mover struct {
	env    *Envelope
	caller string

	mu      sync.Mutex
	current map[string]uint32 // by tenant
}

// NewMover returns a Mover over env; caller names the command in the audit
// log ("tencrypt keys rewrap (uid 0, pid 12)").
func NewMover(env *Envelope, caller string) *Mover {
	return &Mover{env: env, caller: caller, current: map[string]uint32{}}
}

// Current returns tenant's current KEK version. A shredded tenant is an
// error wrapping ErrShredded: its keys cannot move anywhere.
func (m *Mover) Current(ctx context.Context, tenant string) (uint32, error) {
	m.mu.Lock()
	v, ok := m.current[tenant]
	m.mu.Unlock()
	if ok {
		return v, nil
	}
	ti, err := m.env.Provider().Tenant(ctx, tenant)
	if err != nil {
		return 0, err
	}
	if ti.Shredded {
		return 0, fmt.Errorf("tenant %q: %w", tenant, ErrShredded)
	}
	m.mu.Lock()
	m.current[tenant] = ti.Current
	m.mu.Unlock()
	return ti.Current, nil
}

// Stale reports whether wk is under an older KEK version than its
// tenant's current one, and the current version. A key made by another
// backend is an error wrapping ErrMismatch: its versions are not this
// backend's.
func (m *Mover) Stale(ctx context.Context, wk WrappedKey) (bool, uint32, error) {
	if name := m.env.Provider().Name(); wk.Provider != name {
		return false, 0, fmt.Errorf("%w: %v was made by the %q backend, not %q: rewrap it with --backend %s", ErrMismatch, wk, wk.Provider, name, wk.Provider)
	}
	cur, err := m.Current(ctx, wk.Tenant)
	if err != nil {
		return false, 0, err
	}
	return wk.KEKVersion < cur, cur, nil
}

// Unwrap returns the DEK in wk (audited). The caller zeroes it.
func (m *Mover) Unwrap(ctx context.Context, wk WrappedKey, purpose string) (DEK, error) {
	return m.env.Unwrap(ctx, wk, purpose, m.caller)
}

// Rewrap moves wk to its tenant's current KEK version (audited). A
// container that can check the result itself (a tencrypt file's header
// seal) uses this; others use RewrapVerified.
func (m *Mover) Rewrap(ctx context.Context, wk WrappedKey, purpose string) (WrappedKey, error) {
	return m.env.Rewrap(ctx, wk, purpose, m.caller)
}

// RewrapVerified is Rewrap, then unwraps the old and the new wrapped key
// and checks they hold the same DEK, so that a faulty backend cannot make
// the container unreadable: the caller writes the new key only if this
// returns no error. It costs two audited unwraps more than Rewrap.
func (m *Mover) RewrapVerified(ctx context.Context, wk WrappedKey, purpose string) (WrappedKey, error) {
	old, err := m.Unwrap(ctx, wk, purpose)
	if err != nil {
		return WrappedKey{}, err
	}
	defer old.Zero()
	nwk, err := m.Rewrap(ctx, wk, purpose)
	if err != nil {
		return WrappedKey{}, err
	}
	check, err := m.Unwrap(ctx, nwk, purpose)
	if err != nil {
		return WrappedKey{}, fmt.Errorf("unwrap the rewrapped key: %w", err)
	}
	same := check.Equal(&old)
	check.Zero()
	if !same {
		return WrappedKey{}, fmt.Errorf("BUG: the backend rewrapped %v into another key; nothing was written", wk)
	}
	return nwk, nil
}
