// Package pkcs11 is a keys.KEKProvider over PKCS#11 tokens (SoftHSM2, or a
// hardware HSM through its vendor's module). Each tenant has its own token,
// logged in with its own user PIN, so that the token keeps tenants apart;
// its KEKs are AES-256 keys generated on the token that cannot leave it, and
// Wrap and Unwrap run CKM_AES_GCM on the token. docs/PKCS11.md has the
// object layout and the reasons.
package pkcs11

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/tencrypt/tencrypt/keys"
)

// Ciphertext layout (docs/PKCS11.md): format ‖ IV (12) ‖ GCM ciphertext ‖
// tag (16). The format byte names the mechanism and its parameters, so that
// another one can be added without guessing.
const (
	formatGCM = 0x01
	ivSize    = 12
	tagBits   = 128
	overhead  = 1 + ivSize + tagBits/8
)

// Provider is a keys.KEKProvider over PKCS#11 tokens, one per tenant. It is
// safe for concurrent use.
type Provider struct {
	cfg   Config
	mod   *module
	soPIN string // admin only, empty unless cfg.SOPINFile is set

	mu     sync.Mutex
	tokens map[string]*token // open tokens by tenant; guarded by mu
	closed bool              // guarded by mu
}

var _ keys.KEKProvider = (*Provider)(nil)

// Open loads the module cfg names and, for a tenant-scoped cfg, logs in to
// the tenant's token, so that a missing module, a missing token and a
// wrong PIN fail here. The caller must Close the provider.
func Open(ctx context.Context, cfg Config) (_ *Provider, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrBackendUnavailable, err)
	}
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Provider{cfg: cfg, tokens: map[string]*token{}}
	if cfg.PINDir != "" {
		if fi, err := os.Stat(cfg.PINDir); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: pin_dir %s is not a directory: create it (mode 0700) and put one file per tenant in it, holding that tenant token's user PIN", ErrConfig, cfg.PINDir)
		}
		if cfg.SOPINFile != "" {
			if p.soPIN, err = readPINFile(cfg.SOPINFile); err != nil {
				return nil, fmt.Errorf("pkcs11: so_pin_file: %w", err)
			}
		}
	}
	pin := cfg.PIN
	if cfg.Tenant != "" && pin == "" {
		if pin, err = readPINFile(cfg.PINFile); err != nil {
			return nil, fmt.Errorf("pkcs11: pin_file for tenant %q: %w", cfg.Tenant, err)
		}
	}
	if p.mod, err = acquireModule(cfg.Module); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.mod.release()
		}
	}()
	if cfg.Tenant != "" {
		label := TokenLabel(cfg.TokenPrefix, cfg.Tenant)
		t, err := p.mod.openToken(label, pin, cfg.PoolSize)
		if errors.Is(err, errNoToken) {
			return nil, fmt.Errorf("%w: module %s has no token labelled %q for tenant %q: create the tenant with the pkcs11 admin (tencrypt keys create %s), or attach the HSM that holds it",
				keys.ErrBackendUnavailable, cfg.Module, label, cfg.Tenant, cfg.Tenant)
		}
		if err != nil {
			return nil, fmt.Errorf("tenant %q: %w", cfg.Tenant, err)
		}
		p.tokens[cfg.Tenant] = t
	}
	return p, nil
}

// Name implements keys.KEKProvider.
func (p *Provider) Name() string { return Name }

func (p *Provider) admin() bool { return p.cfg.PINDir != "" }

// token returns tenant's open token, opening it for an admin. A
// tenant-scoped provider has no PIN for any other token.
func (p *Provider) token(ctx context.Context, tenant string) (*token, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", keys.ErrBackendUnavailable, err)
	}
	if err := keys.ValidTenant(tenant); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("%w: the pkcs11 provider is closed", keys.ErrBackendUnavailable)
	}
	if t, ok := p.tokens[tenant]; ok {
		return t, nil
	}
	if !p.admin() {
		return nil, fmt.Errorf("%w: these credentials are for tenant %q's token only, not %q's", keys.ErrPermissionDenied, p.cfg.Tenant, tenant)
	}
	pin, err := readPINFile(tenantPINPath(p.cfg.PINDir, tenant))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q (no PIN for it in %s)", keys.ErrUnknownTenant, tenant, p.cfg.PINDir)
	}
	if err != nil {
		return nil, fmt.Errorf("pkcs11: tenant %q: %w", tenant, err)
	}
	label := TokenLabel(p.cfg.TokenPrefix, tenant)
	t, err := p.mod.openToken(label, pin, p.cfg.PoolSize)
	if errors.Is(err, errNoToken) {
		return nil, fmt.Errorf("%w: %q (module %s has no token labelled %q; a token created by another process since this one started is seen after a restart)",
			keys.ErrUnknownTenant, tenant, p.cfg.Module, label)
	}
	if err != nil {
		return nil, fmt.Errorf("tenant %q: %w", tenant, err)
	}
	p.tokens[tenant] = t
	return t, nil
}

// adminToken is token for the operations only an admin may run.
func (p *Provider) adminToken(ctx context.Context, tenant, op string) (*token, error) {
	if !p.admin() {
		return nil, fmt.Errorf("%w: %s needs the pkcs11 admin (pin_dir); these credentials are for tenant %q only", keys.ErrPermissionDenied, op, p.cfg.Tenant)
	}
	return p.token(ctx, tenant)
}

// inventory lists tenant's objects on t.
func (p *Provider) inventory(ctx context.Context, t *token, tenant string) (inventory, error) {
	var inv inventory
	err := t.do(ctx, func(s pkcs11.SessionHandle) (err error) {
		inv, err = takeInventory(p.mod.ctx, s, tenant, t.label)
		return err
	})
	return inv, err
}

// CreateTenant implements keys.KEKProvider. With so_pin_file set and no
// PIN for the tenant yet, it first initialises a free token for it and
// writes the new user PIN into pin_dir.
func (p *Provider) CreateTenant(ctx context.Context, tenant string) error {
	if !p.admin() {
		return fmt.Errorf("%w: creating a tenant needs the pkcs11 admin (pin_dir)", keys.ErrPermissionDenied)
	}
	if err := keys.ValidTenant(tenant); err != nil {
		return fmt.Errorf("tenant %q: %w", tenant, err)
	}
	if err := p.provision(ctx, tenant); err != nil {
		return err
	}
	t, err := p.token(ctx, tenant)
	if err != nil {
		return err
	}
	t.admin.Lock()
	defer t.admin.Unlock()
	inv, err := p.inventory(ctx, t, tenant)
	if err != nil {
		return err
	}
	switch {
	case inv.shredded:
		return fmt.Errorf("%w: %q: a shredded name is never reused; choose another", keys.ErrShredded, tenant)
	case len(inv.versions) > 0:
		return fmt.Errorf("%w: %q", keys.ErrTenantExists, tenant)
	}
	return p.generate(ctx, t, tenant, 1)
}

// provision initialises a token for tenant if pin_dir has no PIN for it
// and the admin holds the SO PIN. The PIN file appears only once the token
// has its user PIN, so a failure leaves no PIN without a token.
func (p *Provider) provision(ctx context.Context, tenant string) error {
	path := tenantPINPath(p.cfg.PINDir, tenant)
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pkcs11: %w", err)
	}
	label := TokenLabel(p.cfg.TokenPrefix, tenant)
	if p.soPIN == "" {
		return fmt.Errorf("pkcs11: no PIN for tenant %q in %s: initialise its token (softhsm2-util --init-token --free --label %s ...) and write its user PIN to %s, or set so_pin_file (%s) so that create does both",
			tenant, p.cfg.PINDir, label, path, EnvSOPINFile)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", keys.ErrBackendUnavailable, err)
	}
	pin, err := newPIN()
	if err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(pin+"\n"), func() error {
		return p.mod.initToken(label, p.soPIN, pin)
	})
}

// generate makes KEK version v of tenant on t. The caller holds t.admin.
func (p *Provider) generate(ctx context.Context, t *token, tenant string, v uint32) error {
	return t.doWrite(ctx, func(s pkcs11.SessionHandle) error {
		_, err := p.mod.ctx.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, kekTemplate(tenant, v))
		if err != nil {
			return mapErr(fmt.Sprintf("generating KEK %s on token %q", kekLabel(tenant, v), t.label), err)
		}
		return nil
	})
}

// Rotate implements keys.KEKProvider.
func (p *Provider) Rotate(ctx context.Context, tenant string) (uint32, error) {
	t, err := p.adminToken(ctx, tenant, "rotate")
	if err != nil {
		return 0, err
	}
	t.admin.Lock()
	defer t.admin.Unlock()
	inv, err := p.usable(ctx, t, tenant)
	if err != nil {
		return 0, err
	}
	next := inv.current + 1
	if next == 0 {
		return 0, fmt.Errorf("pkcs11: tenant %q: KEK versions are exhausted", tenant)
	}
	if err := p.generate(ctx, t, tenant, next); err != nil {
		return 0, err
	}
	return next, nil
}

// usable is the inventory of a tenant that has keys and is not shredded.
func (p *Provider) usable(ctx context.Context, t *token, tenant string) (inventory, error) {
	inv, err := p.inventory(ctx, t, tenant)
	switch {
	case err != nil:
		return inv, err
	case inv.shredded:
		return inv, fmt.Errorf("%w: %q", keys.ErrShredded, tenant)
	case len(inv.versions) == 0:
		return inv, fmt.Errorf("%w: %q (its token %q holds no KEK)", keys.ErrUnknownTenant, tenant, t.label)
	}
	return inv, nil
}

// Tenant implements keys.KEKProvider.
func (p *Provider) Tenant(ctx context.Context, tenant string) (keys.TenantInfo, error) {
	t, err := p.token(ctx, tenant)
	if err != nil {
		return keys.TenantInfo{}, err
	}
	inv, err := p.inventory(ctx, t, tenant)
	if err != nil {
		return keys.TenantInfo{}, err
	}
	if !inv.exists() {
		return keys.TenantInfo{}, fmt.Errorf("%w: %q (its token %q holds no KEK)", keys.ErrUnknownTenant, tenant, t.label)
	}
	return keys.TenantInfo{Tenant: tenant, Current: inv.current, MinVersion: inv.min, Shredded: inv.shredded}, nil
}

// Tenants implements keys.KEKProvider: an admin sees every tenant with a
// PIN in pin_dir and keys (or a tombstone) on its token; a tenant sees
// itself.
func (p *Provider) Tenants(ctx context.Context) ([]keys.TenantInfo, error) {
	names := []string{p.cfg.Tenant}
	if p.admin() {
		entries, err := os.ReadDir(p.cfg.PINDir)
		if err != nil {
			return nil, fmt.Errorf("pkcs11: listing tenants: %w", err)
		}
		names = names[:0]
		for _, e := range entries {
			if e.Type().IsRegular() && keys.ValidTenant(e.Name()) == nil {
				names = append(names, e.Name())
			}
		}
	}
	out := []keys.TenantInfo{}
	for _, n := range names {
		info, err := p.Tenant(ctx, n)
		if errors.Is(err, keys.ErrUnknownTenant) {
			continue // a PIN with no token, or a token with no keys yet
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Retire implements keys.KEKProvider.
func (p *Provider) Retire(ctx context.Context, tenant string, minVersion uint32) error {
	t, err := p.adminToken(ctx, tenant, "retire")
	if err != nil {
		return err
	}
	t.admin.Lock()
	defer t.admin.Unlock()
	inv, err := p.usable(ctx, t, tenant)
	if err != nil {
		return err
	}
	if minVersion == 0 || minVersion > inv.current {
		return fmt.Errorf("%w: cannot retire below version %d of tenant %q: want 1 to the current version %d",
			keys.ErrUnknownKeyVersion, minVersion, tenant, inv.current)
	}
	return t.doWrite(ctx, func(s pkcs11.SessionHandle) error {
		for v, h := range inv.versions {
			if v >= minVersion {
				continue
			}
			if err := p.mod.ctx.DestroyObject(s, h); err != nil {
				return mapErr(fmt.Sprintf("destroying KEK %s", kekLabel(tenant, v)), err)
			}
		}
		return nil
	})
}

// Shred implements keys.KEKProvider. The tombstone is written before any
// key is destroyed, so a shred cut short still reads as shredded, and
// running it again finishes it.
func (p *Provider) Shred(ctx context.Context, tenant string) error {
	t, err := p.adminToken(ctx, tenant, "shred")
	if err != nil {
		return err
	}
	t.admin.Lock()
	defer t.admin.Unlock()
	inv, err := p.inventory(ctx, t, tenant)
	if err != nil {
		return err
	}
	if !inv.exists() {
		return fmt.Errorf("%w: %q (its token %q holds no KEK)", keys.ErrUnknownTenant, tenant, t.label)
	}
	return t.doWrite(ctx, func(s pkcs11.SessionHandle) error {
		if !inv.shredded {
			if _, err := p.mod.ctx.CreateObject(s, tombstoneTemplate(tenant, time.Now())); err != nil {
				return mapErr("creating the shred tombstone", err)
			}
		}
		for v, h := range inv.versions {
			if err := p.mod.ctx.DestroyObject(s, h); err != nil {
				return mapErr(fmt.Sprintf("destroying KEK %s (run shred again to finish)", kekLabel(tenant, v)), err)
			}
		}
		return nil
	})
}

// Wrap implements keys.KEKProvider: AES-256-GCM on the token under the
// current KEK, with a fresh random 96-bit IV and aad as GCM's AAD.
func (p *Provider) Wrap(ctx context.Context, tenant string, plaintext, aad []byte) (uint32, []byte, error) {
	if len(plaintext) > keys.MaxWrapSize {
		return 0, nil, fmt.Errorf("pkcs11: wrap: plaintext is %d bytes, at most %d allowed", len(plaintext), keys.MaxWrapSize)
	}
	t, err := p.token(ctx, tenant)
	if err != nil {
		return 0, nil, err
	}
	inv, err := p.usable(ctx, t, tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]byte, 1+ivSize, overhead+len(plaintext))
	out[0] = formatGCM
	if _, err := rand.Read(out[1:]); err != nil {
		return 0, nil, fmt.Errorf("pkcs11: drawing an IV: %w", err)
	}
	var ct []byte
	err = t.do(ctx, func(s pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(out[1:1+ivSize], aad, tagBits)
		defer params.Free()
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
		if err := p.mod.ctx.EncryptInit(s, mech, inv.versions[inv.current]); err != nil {
			return mapErr("C_EncryptInit(CKM_AES_GCM)", err)
		}
		var e error
		if ct, e = p.mod.ctx.Encrypt(s, plaintext); e != nil {
			return mapErr("C_Encrypt(CKM_AES_GCM)", e)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if len(ct) != len(plaintext)+tagBits/8 {
		return 0, nil, fmt.Errorf("pkcs11: token returned %d bytes of GCM output for %d bytes of plaintext, want %d", len(ct), len(plaintext), len(plaintext)+tagBits/8)
	}
	return inv.current, append(out, ct...), nil
}

// Unwrap implements keys.KEKProvider.
func (p *Provider) Unwrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) ([]byte, error) {
	t, err := p.token(ctx, tenant)
	if err != nil {
		return nil, err
	}
	inv, err := p.usable(ctx, t, tenant)
	if err != nil {
		return nil, err
	}
	h, ok := inv.versions[version]
	if !ok {
		return nil, fmt.Errorf("%w: tenant %q has no KEK version %d (it has %d to %d)", keys.ErrUnknownKeyVersion, tenant, version, inv.min, inv.current)
	}
	if len(ciphertext) < overhead || len(ciphertext) > overhead+keys.MaxWrapSize || ciphertext[0] != formatGCM {
		return nil, fmt.Errorf("%w: tenant %q, KEK version %d", keys.ErrAuth, tenant, version)
	}
	var pt []byte
	err = t.do(ctx, func(s pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(ciphertext[1:1+ivSize], aad, tagBits)
		defer params.Free()
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
		if err := p.mod.ctx.DecryptInit(s, mech, h); err != nil {
			return mapErr("C_DecryptInit(CKM_AES_GCM)", err)
		}
		var e error
		pt, e = p.mod.ctx.Decrypt(s, ciphertext[1+ivSize:])
		if decryptFailed(e) {
			return fmt.Errorf("%w: tenant %q, KEK version %d", keys.ErrAuth, tenant, version)
		}
		if e != nil {
			return mapErr("C_Decrypt(CKM_AES_GCM)", e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pt, nil
}

// Health implements keys.KEKProvider: the module answers, and a tenant's
// token has a logged-in session; for an admin, pin_dir can be read.
func (p *Provider) Health(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", keys.ErrBackendUnavailable, err)
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: the pkcs11 provider is closed", keys.ErrBackendUnavailable)
	}
	if _, err := p.mod.ctx.GetInfo(); err != nil {
		return mapErr("C_GetInfo", err)
	}
	if p.admin() {
		if _, err := os.ReadDir(p.cfg.PINDir); err != nil {
			return fmt.Errorf("pkcs11: pin_dir: %w", err)
		}
		return nil
	}
	t, err := p.token(ctx, p.cfg.Tenant)
	if err != nil {
		return err
	}
	return t.do(ctx, func(s pkcs11.SessionHandle) error {
		info, err := p.mod.ctx.GetSessionInfo(s)
		if err != nil {
			return mapErr("C_GetSessionInfo", err)
		}
		if info.State != pkcs11.CKS_RW_USER_FUNCTIONS {
			return fmt.Errorf("%w: token %q: session is not logged in", keys.ErrPermissionDenied, t.label)
		}
		return nil
	})
}

// Close implements keys.KEKProvider. Closing twice is harmless.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for _, t := range p.tokens {
		t.release()
	}
	p.tokens = nil
	p.mod.release()
	return nil
}
