// Package local is tencrypt's embedded key backend: tenant KEKs in a keyring
// file on this machine, sealed under an admin key (from a passphrase or a key
// file) and, per tenant, under that tenant's access key. docs/KEYRING.md
// specifies the file.
//
// Tenant scoping is cryptographic: each tenant's KEK versions are sealed a
// second time under a per-tenant access key, issued when the tenant is
// created, so a process holding only blue's access key cannot open red's
// KEKs whatever the code does. Only the admin writes the keyring; tenant
// providers only read it and follow the admin's rotations.
package local

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// Name is the backend name recorded in wrapped keys.
const Name = "local"

// Provider is a keys.KEKProvider over a keyring file. It is safe for
// concurrent use, and several processes may open the same keyring: writers
// serialise on a lock file and re-read the keyring under it.
type Provider struct {
	path      string
	accessDir Config // for AccessKeyPath only
	scope     string // tenant of a tenant-scoped provider, "" for admin
	now       func() time.Time

	// mu guards everything below and is held for the whole of every
	// operation, including the file lock of a write.
	mu     sync.Mutex
	master cryptocore.Key // admin: opens the admin body
	kdfFor header         // admin: the header master was derived for
	access cryptocore.Key // tenant: the tenant's access key
	st     *state
	stamp  fileStamp
	closed bool
}

var _ keys.KEKProvider = (*Provider)(nil)

// fileStamp identifies one version of the keyring file. Every write renames
// a new file into place, with a new random write ID in its header: the
// write ID tells versions apart even when a format 2 keyring keeps its size
// and a coarse clock gives a reused inode the same mtime.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
	writeID  [idSize]byte // header bytes 56..72 (format 1: the generation)
}

func stampOf(fi os.FileInfo, head []byte) fileStamp {
	s := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
	}
	if len(head) >= 56+idSize {
		copy(s.writeID[:], head[56:56+idSize])
	}
	return s
}

// peekStamp returns the stamp of the keyring at path, reading only its
// header.
func peekStamp(path string) (fileStamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileStamp{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, err
	}
	var head [56 + idSize]byte
	n, _ := f.ReadAt(head[:], 0)
	return stampOf(fi, head[:n]), nil
}

// Open opens the keyring cfg names, with admin credentials (a key file or a
// passphrase) or one tenant's access key, and checks the credentials. It
// zeroes cfg.Passphrase.
func Open(ctx context.Context, cfg Config) (_ *Provider, err error) {
	defer clear(cfg.Passphrase)
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Provider{path: cfg.Path, accessDir: Config{Path: cfg.Path, AccessKeyDir: cfg.AccessKeyDir}, now: time.Now}
	defer func() {
		if err != nil {
			_ = p.Close()
		}
	}()
	if cfg.TenantKeyFile != "" {
		if err := keys.ValidTenant(cfg.Tenant); err != nil {
			return nil, fmt.Errorf("local keyring: tenant %q: %w", cfg.Tenant, err)
		}
		p.scope = cfg.Tenant
		if p.access, err = readKeyFile(cfg.TenantKeyFile, "tenant access key file"); err != nil {
			return nil, err
		}
	} else {
		u, err := adminUnlock(cfg)
		if err != nil {
			return nil, err
		}
		defer u.zero()
		data, _, err := readKeyring(cfg.Path)
		if err != nil {
			return nil, err
		}
		h, err := parseHeader(data)
		if err != nil {
			return nil, err
		}
		if p.master, err = u.master(&h); err != nil {
			return nil, err
		}
		p.kdfFor = h
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := p.loadLocked(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// InitOptions create a keyring: exactly one of KeyFile and Passphrase.
type InitOptions struct {
	Path string
	// KeyFile is an existing admin key file (see GenerateKeyFile).
	KeyFile string
	// Passphrase unlocks the keyring through Argon2id with KDF. Init zeroes
	// it.
	Passphrase []byte
	// KDF are the Argon2id parameters; zero means cryptocore's defaults. The
	// salt is always fresh.
	KDFTime, KDFMemoryKiB uint32
	KDFThreads            uint8
}

// Init creates an empty keyring at opts.Path, mode 0600. It never replaces
// an existing file.
func Init(ctx context.Context, opts InitOptions) error {
	defer clear(opts.Passphrase)
	if (opts.KeyFile == "") == (len(opts.Passphrase) == 0) {
		return fmt.Errorf("%w: init needs exactly one of a key file and a passphrase", ErrConfig)
	}
	u := &unlockSecret{}
	if opts.KeyFile != "" {
		k, err := readKeyFile(opts.KeyFile, "key file")
		if err != nil {
			return err
		}
		u.keyFile = k
		defer u.keyFile.Zero()
	} else {
		u.passphrase = opts.Passphrase
	}
	kdf := cryptocore.DefaultKDFParams()
	if opts.KDFTime != 0 {
		kdf.Time, kdf.MemoryKiB, kdf.Threads = opts.KDFTime, opts.KDFMemoryKiB, opts.KDFThreads
	}
	data, err := newKeyring(u, kdf)
	if err != nil {
		return err
	}
	unlock, err := lockFile(ctx, opts.Path)
	if err != nil {
		return err
	}
	defer unlock()
	if err := writeFileAtomic(opts.Path, data, false); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keyring %s exists already; nothing was changed", opts.Path)
		}
		return fmt.Errorf("create keyring: %w", err)
	}
	return nil
}

// readKeyring reads the keyring file through one descriptor, so the stamp
// and the bytes belong to the same file even while a writer renames.
func readKeyring(path string) ([]byte, fileStamp, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fileStamp{}, fmt.Errorf("keyring %s does not exist: create it with `tencrypt keys init`", path)
	}
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("open keyring: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("keyring: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("read keyring %s: %w", path, err)
	}
	return data, stampOf(fi, data), nil
}

func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local keyring: %w: %w", keys.ErrBackendUnavailable, err)
	}
	return nil
}

var errClosed = errors.New("local keyring: provider is closed")

// openLocked parses and opens data with the provider's credentials.
func (p *Provider) openLocked(data []byte) (*state, error) {
	if p.scope != "" {
		return openTenant(data, p.scope, &p.access)
	}
	h, err := parseHeader(data)
	if err != nil {
		return nil, err
	}
	if h.unlock != p.kdfFor.unlock || h.kdf != p.kdfFor.kdf {
		return nil, fmt.Errorf("keyring %s was re-initialised since it was opened; open it again", p.path)
	}
	s, err := openAdmin(data, &p.master)
	if err != nil {
		return nil, err
	}
	// An admin provider that has seen a generation refuses an older one:
	// someone put an older copy of the keyring back (docs/KEYRING.md).
	// Tenants cannot check this; they do not see the generation.
	if p.st != nil && s.gen < p.st.gen {
		last := p.st.gen
		s.zero()
		return nil, fmt.Errorf("keyring %s: %w: it went back from generation %d to %d, so an older copy was put in place; "+
			"find out who can write it, and restore the latest copy", p.path, keys.ErrAuth, last, s.gen)
	}
	return s, nil
}

// loadLocked returns the current keyring, re-reading the file only when it
// was replaced since the last read.
func (p *Provider) loadLocked(ctx context.Context) (*state, error) {
	if p.closed {
		return nil, errClosed
	}
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if stamp, err := peekStamp(p.path); err == nil && p.st != nil && stamp == p.stamp {
		return p.st, nil
	}
	data, stamp, err := readKeyring(p.path)
	if err != nil {
		return nil, err
	}
	st, err := p.openLocked(data)
	if err != nil {
		return nil, err
	}
	p.st.zero()
	p.st, p.stamp = st, stamp
	return st, nil
}

// updateLocked applies fn to a fresh copy of the keyring read under the
// file lock and writes the result atomically. fn's changes become visible
// only once the new file is in place.
func (p *Provider) updateLocked(ctx context.Context, fn func(s *state) error) error {
	if p.closed {
		return errClosed
	}
	if err := ctxErr(ctx); err != nil {
		return err
	}
	unlock, err := lockFile(ctx, p.path)
	if err != nil {
		return fmt.Errorf("local keyring: %w: %w", keys.ErrBackendUnavailable, err)
	}
	defer unlock()
	data, _, err := readKeyring(p.path)
	if err != nil {
		return err
	}
	s, err := p.openLocked(data)
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		s.zero()
		return err
	}
	s.gen++
	out, err := s.marshal(&p.master)
	if err != nil {
		s.zero()
		return err
	}
	if err := writeFileAtomic(p.path, out, true); err != nil {
		s.zero()
		return fmt.Errorf("write keyring: %w", err)
	}
	p.st.zero()
	// Keep the stamp only if the file is still the one written here: if
	// another writer replaced it already, the zero stamp makes the next
	// load read it.
	p.st, p.stamp = s, fileStamp{}
	if stamp, err := peekStamp(p.path); err == nil && stamp.writeID == s.hdr.writeID {
		p.stamp = stamp
	}
	return nil
}

// Name returns "local".
func (p *Provider) Name() string { return Name }

// check validates tenant and the credentials; admin marks operations
// only admin credentials may do.
func (p *Provider) check(tenant string, admin bool) error {
	if err := keys.ValidTenant(tenant); err != nil {
		return fmt.Errorf("%q: %w", tenant, err)
	}
	if p.scope != "" && (admin || tenant != p.scope) {
		if admin && tenant == p.scope {
			return fmt.Errorf("local keyring: %w: tenant access keys can wrap and unwrap only; use the admin key", keys.ErrPermissionDenied)
		}
		return fmt.Errorf("local keyring: %w: this access key is tenant %q's", keys.ErrPermissionDenied, p.scope)
	}
	return nil
}

// live returns a tenant that exists and is not shredded.
func live(s *state, tenant string) (*tenantState, error) {
	t := s.tenants[tenant]
	switch {
	case t == nil:
		return nil, fmt.Errorf("local keyring: %w %q", keys.ErrUnknownTenant, tenant)
	case t.shredded:
		return nil, fmt.Errorf("local keyring: tenant %q: %w", tenant, keys.ErrShredded)
	}
	return t, nil
}

// CreateTenant creates version 1 of tenant's KEK and its access key, which
// it writes to Config.AccessKeyPath(tenant) (mode 0600; it never replaces a
// file).
func (p *Provider) CreateTenant(ctx context.Context, tenant string) error {
	if err := p.check(tenant, true); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	keyPath := p.accessDir.AccessKeyPath(tenant)
	wrote := false
	err := p.updateLocked(ctx, func(s *state) error {
		if t := s.tenants[tenant]; t != nil {
			if t.shredded {
				return fmt.Errorf("local keyring: tenant %q: %w; a shredded name is never reused", tenant, keys.ErrShredded)
			}
			return fmt.Errorf("local keyring: %w: %q", keys.ErrTenantExists, tenant)
		}
		t := &tenantState{name: tenant, created: p.now().UTC(), access: cryptocore.NewRandomKey(), min: 1, current: 1}
		k := cryptocore.NewRandomKey()
		t.keks = map[uint32]*cryptocore.Key{1: &k}
		if err := writeKeyFile(keyPath, &t.access); err != nil {
			t.zero()
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("local keyring: tenant %q: access key file %s exists already (left by an interrupted create?): remove it and try again", tenant, keyPath)
			}
			return fmt.Errorf("local keyring: write the access key of tenant %q: %w", tenant, err)
		}
		wrote = true
		s.tenants[tenant] = t
		return nil
	})
	if err != nil && wrote {
		_ = os.Remove(keyPath)
	}
	return err
}

// ReissueAccessKey replaces tenant's access key with a new one, written over
// Config.AccessKeyPath(tenant) (mode 0600), and returns that path. Holders
// of the old key can no longer open the tenant's record: this is how a
// leaked access key is revoked. The KEKs do not change, so wrapped keys stay
// valid.
func (p *Provider) ReissueAccessKey(ctx context.Context, tenant string) (string, error) {
	if err := p.check(tenant, true); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	keyPath := p.accessDir.AccessKeyPath(tenant)
	_ = os.Remove(keyPath + ".new") // a new key left by an interrupted reissue of tencrypt before 2026-12
	if err := os.MkdirAll(filepath.Dir(keyPath), 0o700); err != nil {
		return "", fmt.Errorf("local keyring: write the new access key of tenant %q: %w", tenant, err)
	}
	k := cryptocore.NewRandomKey()
	defer k.Zero()
	buf := encodeKeyFile(&k)
	defer clear(buf)
	var updateErr error
	sealed := false
	// The new key file is durable but not yet in place when the record is
	// sealed under the key; the file replaces the old one only once the
	// keyring has changed, so neither step is seen without the other.
	err := atomicfile.Write(keyPath, buf, atomicfile.Options{Perm: 0o600, Replace: true, BeforeInstall: func() error {
		updateErr = p.updateLocked(ctx, func(s *state) error {
			t, err := live(s, tenant)
			if err != nil {
				return err
			}
			t.access.Zero()
			t.access = k
			return nil
		})
		sealed = updateErr == nil
		return updateErr
	}})
	switch {
	case err == nil:
		return keyPath, nil
	case sealed:
		return "", fmt.Errorf("local keyring: tenant %q's record is sealed under a new access key, which may not be in place at %s: if that file did not change, run keys reissue again: %w", tenant, keyPath, err)
	case updateErr != nil:
		return "", err
	}
	return "", fmt.Errorf("local keyring: write the new access key of tenant %q: %w", tenant, err)
}

// Rotate adds a KEK version to tenant and makes it current.
func (p *Provider) Rotate(ctx context.Context, tenant string) (uint32, error) {
	if err := p.check(tenant, true); err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var v uint32
	err := p.updateLocked(ctx, func(s *state) error {
		t, err := live(s, tenant)
		if err != nil {
			return err
		}
		if int(t.current-t.min+1) >= maxVersions {
			return fmt.Errorf("local keyring: tenant %q has %d live versions; retire old ones first", tenant, maxVersions)
		}
		k := cryptocore.NewRandomKey()
		t.current++
		t.keks[t.current] = &k
		v = t.current
		return nil
	})
	return v, err
}

// Tenant reports tenant's versions.
func (p *Provider) Tenant(ctx context.Context, tenant string) (keys.TenantInfo, error) {
	if err := p.check(tenant, false); err != nil {
		return keys.TenantInfo{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.loadLocked(ctx)
	if err != nil {
		return keys.TenantInfo{}, err
	}
	t := s.tenants[tenant]
	if t == nil {
		return keys.TenantInfo{}, fmt.Errorf("local keyring: %w %q", keys.ErrUnknownTenant, tenant)
	}
	return t.info(), nil
}

// Tenants lists every tenant for the admin, and its own for a tenant.
func (p *Provider) Tenants(ctx context.Context) ([]keys.TenantInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.loadLocked(ctx)
	if err != nil {
		return nil, err
	}
	out := []keys.TenantInfo{}
	for _, t := range s.sorted() {
		out = append(out, t.info())
	}
	return out, nil
}

// Retire destroys tenant's KEK versions below minVersion.
func (p *Provider) Retire(ctx context.Context, tenant string, minVersion uint32) error {
	if err := p.check(tenant, true); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.updateLocked(ctx, func(s *state) error {
		t, err := live(s, tenant)
		if err != nil {
			return err
		}
		if minVersion > t.current {
			return fmt.Errorf("local keyring: retire below version %d: %w: tenant %q is at version %d", minVersion, keys.ErrUnknownKeyVersion, tenant, t.current)
		}
		for v := t.min; v < minVersion; v++ {
			t.keks[v].Zero()
			delete(t.keks, v)
		}
		t.min = max(t.min, minVersion)
		return nil
	})
}

// Shred destroys every KEK version and the access key of tenant, keeping a
// tombstone so the name is never reused, and removes the access key file.
func (p *Provider) Shred(ctx context.Context, tenant string) error {
	if err := p.check(tenant, true); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.updateLocked(ctx, func(s *state) error {
		t, err := live(s, tenant)
		if err != nil {
			return err
		}
		// The locator key stays, to seal the tombstone that tells a holder
		// of the old access key it was shredded; it opens no KEK.
		lk := locatorKey(&t.access, &s.hdr)
		t.zero()
		t.locKey = lk
		t.keks, t.shredded, t.shreddedAt = nil, true, p.now().UTC()
		t.min, t.current = 0, 0
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.Remove(p.accessDir.AccessKeyPath(tenant)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("local keyring: tenant %q is shredded, but its access key file could not be removed (it opens nothing now): %w", tenant, err)
	}
	return nil
}

// wrapAD = "tencrypt local wrap v1" ‖ 0 ‖ tenant length ‖ tenant ‖
// version (BE32) ‖ aad: a ciphertext opens only for the tenant, version and
// aad it was made for.
func wrapAD(tenant string, version uint32, aad []byte) []byte {
	const label = "tencrypt local wrap v1\x00"
	b := make([]byte, 0, len(label)+1+len(tenant)+4+len(aad))
	b = append(b, label...)
	b = append(b, byte(len(tenant)))
	b = append(b, tenant...)
	b = binary.BigEndian.AppendUint32(b, version)
	return append(b, aad...)
}

func kekAEAD(k *cryptocore.Key) *cryptocore.AEAD {
	a, err := cryptocore.NewAESGCM(k)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return a
}

// Wrap seals plaintext under tenant's current KEK with AES-256-GCM; the
// ciphertext is nonce ‖ ciphertext ‖ tag.
func (p *Provider) Wrap(ctx context.Context, tenant string, plaintext, aad []byte) (uint32, []byte, error) {
	if err := p.check(tenant, false); err != nil {
		return 0, nil, err
	}
	if len(plaintext) > keys.MaxWrapSize {
		return 0, nil, fmt.Errorf("local keyring: wrap: %d bytes is more than keys.MaxWrapSize (%d)", len(plaintext), keys.MaxWrapSize)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.loadLocked(ctx)
	if err != nil {
		return 0, nil, err
	}
	t, err := live(s, tenant)
	if err != nil {
		return 0, nil, err
	}
	v := t.current
	return v, kekAEAD(t.keks[v]).Seal(nil, plaintext, wrapAD(tenant, v, aad)), nil
}

// Unwrap opens a ciphertext made by Wrap.
func (p *Provider) Unwrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) ([]byte, error) {
	if err := p.check(tenant, false); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.loadLocked(ctx)
	if err != nil {
		return nil, err
	}
	t, err := live(s, tenant)
	if err != nil {
		return nil, err
	}
	k := t.keks[version]
	if k == nil {
		return nil, fmt.Errorf("local keyring: tenant %q: %w %d (it has versions %d to %d)", tenant, keys.ErrUnknownKeyVersion, version, t.min, t.current)
	}
	pt, err := kekAEAD(k).Open(nil, ciphertext, wrapAD(tenant, version, aad))
	if err != nil {
		return nil, fmt.Errorf("local keyring: unwrap for tenant %q: %w", tenant, keys.ErrAuth)
	}
	return pt, nil
}

// Health reads the keyring and checks the credentials still open it.
func (p *Provider) Health(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, err := p.loadLocked(ctx)
	if err != nil {
		return err
	}
	if p.scope != "" {
		_, err = live(s, p.scope)
	}
	return err
}

// Close zeroes the keys the provider holds; it is unusable after.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.master.Zero()
	p.access.Zero()
	p.st.zero()
	p.st = nil
	return nil
}
