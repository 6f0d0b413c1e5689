package fscrypt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/keyholders"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/rest/fscrypt"
	"github.com/tencrypt/tencrypt/rest/fscrypt/fscrypttest"
)

// world is a local keyring with tenants blue and red, the admin's volumes
// over it, and an ext4 file system with the encrypt feature.
type world struct {
	t     *testing.T
	cfg   local.Config
	p     keys.KEKProvider
	env   *keys.Envelope
	vols  *fscrypt.Volumes
	fs    string
	audit *keystest.AuditLog
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir := t.TempDir()
	cfg := local.Config{Path: filepath.Join(dir, "keyring"), KeyFile: filepath.Join(dir, "admin.key"), AccessKeyDir: filepath.Join(dir, "access")}
	if err := local.GenerateKeyFile(cfg.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := local.Init(t.Context(), local.InitOptions{Path: cfg.Path, KeyFile: cfg.KeyFile}); err != nil {
		t.Fatal(err)
	}
	p, err := local.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	for _, tenant := range []string{"blue", "red"} {
		if err := p.CreateTenant(t.Context(), tenant); err != nil {
			t.Fatal(err)
		}
	}
	w := &world{t: t, cfg: cfg, p: p, audit: &keystest.AuditLog{}, fs: fscrypttest.Ext4(t, true)}
	w.env = keys.NewEnvelope(p, w.audit, time.Now)
	w.vols = fscrypt.New(w.env, "test")
	return w
}

// create makes a volume of tenant at name on the world's file system.
func (w *world) create(name, tenant string) (string, *fscrypt.Metadata) {
	w.t.Helper()
	base := filepath.Join(w.fs, name)
	m, err := w.vols.Create(w.t.Context(), base, tenant)
	if err != nil {
		w.t.Fatalf("create %s: %v", name, err)
	}
	w.t.Cleanup(func() { fscrypt.Lock(base) })
	return base, m
}

func (w *world) unlock(base string) {
	w.t.Helper()
	if _, err := w.vols.Unlock(w.t.Context(), base); err != nil {
		w.t.Fatalf("unlock: %v", err)
	}
}

func (w *world) lock(base string) fscrypt.LockResult {
	w.t.Helper()
	res, err := fscrypt.Lock(base)
	if err != nil {
		w.t.Fatalf("lock: %v", err)
	}
	return res
}

func (w *world) state(base string) string {
	w.t.Helper()
	st, err := fscrypt.ReadStatus(base)
	if err != nil {
		w.t.Fatalf("status: %v", err)
	}
	return st.State
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

var secret = bytes.Repeat([]byte("payroll of blue "), 1000)

// TestLifecycle: created locked; unlocked, written; locked, the disk shows
// encrypted names and refuses contents; unlocked again, the data is back.
func TestLifecycle(t *testing.T) {
	w := newWorld(t)
	base, m := w.create("vol", "blue")
	data := filepath.Join(base, fscrypt.DataDir)
	if got := w.state(base); got != fscrypt.StateLocked {
		t.Fatalf("after create: %s, want locked", got)
	}
	// The worked size in docs/FSCRYPT.md: local keyring, tenant blue.
	if fi, err := os.Stat(filepath.Join(base, fscrypt.MetadataFile)); err != nil || fi.Size() != 131 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("metadata file: %v, %v (want 131 bytes, mode 0600)", fi, err)
	}
	if err := os.WriteFile(filepath.Join(data, "x"), []byte("x"), 0o600); !errors.Is(err, unix.ENOKEY) {
		t.Fatalf("write into a locked volume: %v, want ENOKEY", err)
	}
	w.unlock(base)
	st, _ := fscrypt.ReadStatus(base)
	if st.State != fscrypt.StateUnlocked || st.Tenant != "blue" || st.KeyIdentifier != m.Identifier.String() || st.Contents != "AES-256-XTS" {
		t.Fatalf("status after unlock: %+v", st)
	}
	if err := os.WriteFile(filepath.Join(data, "salaries.txt"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(data, "reports"), 0o700); err != nil {
		t.Fatal(err)
	}
	// A file still open keeps the key busy; closing it and locking again
	// finishes the job.
	f, err := os.Open(filepath.Join(data, "salaries.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if res := w.lock(base); !res.WasUnlocked || !res.FilesBusy {
		f.Close()
		t.Fatalf("lock with a file open: %+v, want files busy", res)
	}
	if got := w.state(base); got != fscrypt.StateIncompletelyRemoved {
		t.Fatalf("state with a file open after lock: %s", got)
	}
	f.Close()
	if res := w.lock(base); !res.WasUnlocked || res.FilesBusy {
		t.Fatalf("lock after closing: %+v", res)
	}
	locked := names(t, data)
	if len(locked) != 2 || slices.Contains(locked, "salaries.txt") || slices.Contains(locked, "reports") {
		t.Fatalf("a locked volume shows %q, want two encrypted names", locked)
	}
	for _, n := range locked {
		if _, err := os.ReadFile(filepath.Join(data, n)); err == nil {
			t.Fatalf("a locked volume let %s be read", n)
		}
	}
	if res := w.lock(base); res.WasUnlocked {
		t.Fatalf("second lock: %+v, want nothing to do", res)
	}
	// Every unwrap is audited; an audit log that cannot record fails the
	// unlock closed, and the volume stays locked.
	w.audit.Fail = true
	if _, err := w.vols.Unlock(t.Context(), base); !errors.Is(err, keys.ErrAudit) {
		t.Fatalf("unlock with a failing audit log: %v, want ErrAudit", err)
	}
	if got := w.state(base); got != fscrypt.StateLocked {
		t.Fatalf("after a failed unlock: %s", got)
	}
	w.audit.Fail = false
	w.unlock(base)
	if got, err := os.ReadFile(filepath.Join(data, "salaries.txt")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("read after unlocking again: %v", err)
	}
	n := 0
	for _, r := range w.audit.Records() {
		if r.Op == "unwrap" && r.Purpose == fscrypt.Purpose && r.Tenant == "blue" && r.Caller == "test" && r.Outcome == "ok" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d audited unwraps for two unlocks: %+v", n, w.audit.Records())
	}
}

// TestOtherTenantCannotUnlock: red's credentials cannot unwrap blue's
// volume key, and the volume stays locked.
func TestOtherTenantCannotUnlock(t *testing.T) {
	w := newWorld(t)
	base, _ := w.create("blue-vol", "blue")
	red, err := local.Open(t.Context(), local.Config{Path: w.cfg.Path, Tenant: "red", TenantKeyFile: w.cfg.AccessKeyPath("red")})
	if err != nil {
		t.Fatal(err)
	}
	defer red.Close()
	redVols := fscrypt.New(keys.NewEnvelope(red, &keystest.AuditLog{}, time.Now), "test")
	if _, err := redVols.Unlock(t.Context(), base); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("red's unlock of blue's volume: %v, want ErrPermissionDenied", err)
	}
	if got := w.state(base); got != fscrypt.StateLocked {
		t.Fatalf("after red's attempt: %s", got)
	}
	// Blue's own credentials do.
	blue, err := local.Open(t.Context(), local.Config{Path: w.cfg.Path, Tenant: "blue", TenantKeyFile: w.cfg.AccessKeyPath("blue")})
	if err != nil {
		t.Fatal(err)
	}
	defer blue.Close()
	if _, err := fscrypt.New(keys.NewEnvelope(blue, &keystest.AuditLog{}, time.Now), "test").Unlock(t.Context(), base); err != nil {
		t.Fatalf("blue's unlock: %v", err)
	}
}

// TestVolumesHaveTheirOwnKeys: two volumes of one tenant have different
// IDs, wrapped keys and key identifiers.
func TestVolumesHaveTheirOwnKeys(t *testing.T) {
	w := newWorld(t)
	_, a := w.create("a", "blue")
	_, b := w.create("b", "blue")
	if a.Identifier == b.Identifier || a.ID == b.ID || bytes.Equal(a.Key.Ciphertext, b.Key.Ciphertext) {
		t.Fatalf("two volumes share a key: %s %s", a.Identifier, b.Identifier)
	}
}

// TestRotateRewrapRetire: the documented rotation: the retire check sees
// the volume's key under version 1, rewrap moves it, version 1 is retired,
// and the volume still unlocks, with its data.
func TestRotateRewrapRetire(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	base, m := w.create("vol", "blue")
	w.unlock(base)
	path := filepath.Join(base, fscrypt.DataDir, "kept.txt")
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := w.p.Rotate(ctx, "blue"); err != nil || v != 2 {
		t.Fatalf("rotate: %d, %v", v, err)
	}
	holders := keyholders.All(keyholders.Options{})
	res, err := keys.Scan(ctx, []string{base}, holders)
	if err != nil {
		t.Fatal(err)
	}
	if stale := res.Below(w.p.Name(), "blue", 2); len(stale) != 1 || stale[0].Kind != "fscrypt-volume" {
		t.Fatalf("retire check before rewrap: %+v (scan %+v)", stale, res)
	}
	var moved []keys.Moved
	if err := keys.RewrapPaths(ctx, []string{base}, holders, keys.NewMover(w.env, "test"), func(mv keys.Moved) { moved = append(moved, mv) }); err != nil {
		t.Fatal(err)
	}
	if len(moved) != 1 || moved[0].Status != keys.StatusRewrapped || moved[0].To != 2 {
		t.Fatalf("rewrap: %+v", moved)
	}
	if res, _ := keys.Scan(ctx, []string{base}, holders); len(res.Below(w.p.Name(), "blue", 2)) != 0 {
		t.Fatalf("retire check after rewrap: %+v", res.Keys)
	}
	if err := w.p.Retire(ctx, "blue", 2); err != nil {
		t.Fatal(err)
	}
	w.lock(base)
	m2, err := w.vols.Unlock(ctx, base)
	if err != nil {
		t.Fatalf("unlock after rewrap and retire: %v", err)
	}
	if m2.Key.KEKVersion != 2 || m2.Identifier != m.Identifier || m2.ID != m.ID {
		t.Fatalf("metadata after rewrap: %+v", m2)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("data after rewrap: %v", err)
	}
}

// TestShreddedTenant: once the tenant is shredded the volume can never be
// unlocked again.
func TestShreddedTenant(t *testing.T) {
	w := newWorld(t)
	base, _ := w.create("vol", "blue")
	if err := w.p.Shred(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.vols.Unlock(t.Context(), base); !errors.Is(err, keys.ErrShredded) {
		t.Fatalf("unlock after shred: %v, want ErrShredded", err)
	}
	if got := w.state(base); got != fscrypt.StateLocked {
		t.Fatalf("after unlock of a shredded volume: %s", got)
	}
}

// TestCopyUnlocksElsewhere: a copy of the file system, mounted elsewhere,
// unlocks with the tenant's key alone and has the data; the original and
// the copy are one volume (the same key identifier).
func TestCopyUnlocksElsewhere(t *testing.T) {
	w := newWorld(t)
	f := fscrypttest.NewExt4(t, true)
	base := filepath.Join(f.Dir, "vol")
	m, err := w.vols.Create(t.Context(), base, "blue")
	if err != nil {
		t.Fatal(err)
	}
	w.unlock(base)
	if err := os.WriteFile(filepath.Join(base, fscrypt.DataDir, "ledger"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	w.lock(base)
	c := f.Copy(t)
	copied := filepath.Join(c.Dir, "vol")
	t.Cleanup(func() { fscrypt.Lock(copied) })
	m2, err := w.vols.Unlock(t.Context(), copied)
	if err != nil {
		t.Fatalf("unlock the copy: %v", err)
	}
	if m2.Identifier != m.Identifier {
		t.Fatalf("the copy's key %s, the original's %s", m2.Identifier, m.Identifier)
	}
	if got, err := os.ReadFile(filepath.Join(copied, fscrypt.DataDir, "ledger")); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("the copy's data: %v", err)
	}
	// The key went into the copy's file system only.
	if got := w.state(base); got != fscrypt.StateLocked {
		t.Fatalf("the original after unlocking the copy: %s", got)
	}
}

// downKMS is a backend that cannot be reached for unwraps.
type downKMS struct{ keys.KEKProvider }

func (downKMS) Unwrap(context.Context, string, uint32, []byte, []byte) ([]byte, error) {
	return nil, fmt.Errorf("test KMS: %w", keys.ErrBackendUnavailable)
}

// TestKMSDown: with the KMS unreachable, unlock fails with the backend's
// error and adds nothing; once it is back, the volume unlocks.
func TestKMSDown(t *testing.T) {
	w := newWorld(t)
	base, _ := w.create("vol", "blue")
	down := fscrypt.New(keys.NewEnvelope(downKMS{w.p}, &keystest.AuditLog{}, time.Now), "test")
	if _, err := down.Unlock(t.Context(), base); !errors.Is(err, keys.ErrBackendUnavailable) {
		t.Fatalf("unlock with the KMS down: %v, want ErrBackendUnavailable", err)
	}
	if got := w.state(base); got != fscrypt.StateLocked {
		t.Fatalf("after unlock with the KMS down: %s", got)
	}
	w.unlock(base)
}

// TestForgedMetadataLeavesOtherVolumesAlone: a metadata file that carries
// another volume's wrapped key under its own policy's identifier is
// refused before the kernel sees the key, so the other volume, unlocked,
// stays unlocked (the kernel would otherwise add its key again and take
// it out on the mismatch).
func TestForgedMetadataLeavesOtherVolumesAlone(t *testing.T) {
	w := newWorld(t)
	a, ma := w.create("a", "blue")
	b, mb := w.create("b", "blue")
	w.unlock(b)
	forged := *mb
	forged.Identifier = ma.Identifier
	data, err := forged.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, fscrypt.MetadataFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := w.vols.Unlock(t.Context(), a); !errors.Is(err, fscrypt.ErrWrongKey) {
		t.Fatalf("unlock with another volume's key: %v, want ErrWrongKey", err)
	}
	if got := w.state(b); got != fscrypt.StateUnlocked {
		t.Fatalf("the other volume is %s after the forged unlock, want %s", got, fscrypt.StateUnlocked)
	}
	if got := w.state(a); got == fscrypt.StateUnlocked {
		t.Fatalf("the forged volume is %s", got)
	}
}
