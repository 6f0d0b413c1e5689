package keystest

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// Memory is an in-memory KMS for unit tests of packages that use keys. It
// keeps real AES-256-GCM KEKs per tenant and version and follows every rule
// of the conformance suite (it runs it in memory_test.go), so code tested
// against it behaves the same on real backends. It is not persistent and
// not for production.
type Memory struct {
	name string
	now  func() time.Time

	mu      sync.Mutex
	tenants map[string]*memTenant
}

type memTenant struct {
	keks     map[uint32]*cryptocore.AEAD
	current  uint32
	min      uint32
	created  time.Time
	shredded bool
}

// NewMemory returns an empty in-memory KMS whose providers report name as
// their Name ("memory" if empty). now is the clock for TenantInfo.Created
// (time.Now if nil).
func NewMemory(name string, now func() time.Time) *Memory {
	if name == "" {
		name = "memory"
	}
	if now == nil {
		now = time.Now
	}
	return &Memory{name: name, now: now, tenants: map[string]*memTenant{}}
}

// Admin returns a provider with admin credentials.
func (m *Memory) Admin() keys.KEKProvider { return &memProvider{m: m} }

// ForTenant returns a provider with credentials scoped to tenant: data-plane
// operations on tenant only.
func (m *Memory) ForTenant(tenant string) keys.KEKProvider {
	return &memProvider{m: m, scope: tenant}
}

// Harness returns a conformance-suite harness over m.
func (m *Memory) Harness() Harness {
	return Harness{
		Admin:     func(*testing.T) keys.KEKProvider { return m.Admin() },
		ForTenant: func(_ *testing.T, tenant string) keys.KEKProvider { return m.ForTenant(tenant) },
	}
}

type memProvider struct {
	m     *Memory
	scope string // "" for admin
}

func (p *memProvider) Name() string { return p.m.name }

func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", keys.ErrBackendUnavailable, err)
	}
	return nil
}

// check validates the name and the credentials for an operation; admin
// marks operations tenant credentials may not do.
func (p *memProvider) check(ctx context.Context, tenant string, admin bool) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := keys.ValidTenant(tenant); err != nil {
		return err
	}
	if p.scope != "" && (admin || tenant != p.scope) {
		return fmt.Errorf("%w: credentials of tenant %q", keys.ErrPermissionDenied, p.scope)
	}
	return nil
}

// tenantLocked returns the live tenant; the caller holds m.mu.
func (m *Memory) tenantLocked(tenant string) (*memTenant, error) {
	t, ok := m.tenants[tenant]
	switch {
	case !ok:
		return nil, fmt.Errorf("%w: %q", keys.ErrUnknownTenant, tenant)
	case t.shredded:
		return nil, fmt.Errorf("tenant %q: %w", tenant, keys.ErrShredded)
	}
	return t, nil
}

func newKEK() *cryptocore.AEAD {
	k := cryptocore.NewRandomKey()
	defer k.Zero()
	a, err := cryptocore.NewAESGCM(&k)
	if err != nil {
		panic("BUG: " + err.Error())
	}
	return a
}

func (p *memProvider) CreateTenant(ctx context.Context, tenant string) error {
	if err := p.check(ctx, tenant, true); err != nil {
		return err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	if t, ok := p.m.tenants[tenant]; ok {
		if t.shredded {
			return fmt.Errorf("tenant %q: %w", tenant, keys.ErrShredded)
		}
		return fmt.Errorf("%w: %q", keys.ErrTenantExists, tenant)
	}
	p.m.tenants[tenant] = &memTenant{keks: map[uint32]*cryptocore.AEAD{1: newKEK()}, current: 1, min: 1, created: p.m.now()}
	return nil
}

func (p *memProvider) Rotate(ctx context.Context, tenant string) (uint32, error) {
	if err := p.check(ctx, tenant, true); err != nil {
		return 0, err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	t, err := p.m.tenantLocked(tenant)
	if err != nil {
		return 0, err
	}
	t.current++
	t.keks[t.current] = newKEK()
	return t.current, nil
}

func (t *memTenant) info(name string) keys.TenantInfo {
	return keys.TenantInfo{Tenant: name, Current: t.current, MinVersion: t.min, Created: t.created, Shredded: t.shredded}
}

func (p *memProvider) Tenant(ctx context.Context, tenant string) (keys.TenantInfo, error) {
	if err := p.check(ctx, tenant, false); err != nil {
		return keys.TenantInfo{}, err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	t, ok := p.m.tenants[tenant]
	if !ok {
		return keys.TenantInfo{}, fmt.Errorf("%w: %q", keys.ErrUnknownTenant, tenant)
	}
	return t.info(tenant), nil
}

func (p *memProvider) Tenants(ctx context.Context) ([]keys.TenantInfo, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	var out []keys.TenantInfo
	for name, t := range p.m.tenants {
		if p.scope == "" || p.scope == name {
			out = append(out, t.info(name))
		}
	}
	slices.SortFunc(out, func(a, b keys.TenantInfo) int { return cmpString(a.Tenant, b.Tenant) })
	return out, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (p *memProvider) Retire(ctx context.Context, tenant string, minVersion uint32) error {
	if err := p.check(ctx, tenant, true); err != nil {
		return err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	t, err := p.m.tenantLocked(tenant)
	if err != nil {
		return err
	}
	if minVersion > t.current {
		return fmt.Errorf("retire below version %d: %w: tenant %q is at version %d", minVersion, keys.ErrUnknownKeyVersion, tenant, t.current)
	}
	for v := t.min; v < minVersion; v++ {
		delete(t.keks, v)
	}
	t.min = max(t.min, minVersion)
	return nil
}

func (p *memProvider) Shred(ctx context.Context, tenant string) error {
	if err := p.check(ctx, tenant, true); err != nil {
		return err
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	t, err := p.m.tenantLocked(tenant)
	if err != nil {
		return err
	}
	t.keks, t.shredded = nil, true
	return nil
}

// ad binds the tenant and the KEK version into the AEAD as well as the
// caller's aad, so a ciphertext cannot move between tenants or versions.
func ad(tenant string, version uint32, aad []byte) []byte {
	b := make([]byte, 0, 1+len(tenant)+4+len(aad))
	b = append(b, byte(len(tenant)))
	b = append(b, tenant...)
	b = binary.BigEndian.AppendUint32(b, version)
	return append(b, aad...)
}

func (p *memProvider) Wrap(ctx context.Context, tenant string, plaintext, aad []byte) (uint32, []byte, error) {
	if err := p.check(ctx, tenant, false); err != nil {
		return 0, nil, err
	}
	if len(plaintext) > keys.MaxWrapSize {
		return 0, nil, fmt.Errorf("wrap: %d bytes is more than keys.MaxWrapSize (%d)", len(plaintext), keys.MaxWrapSize)
	}
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	t, err := p.m.tenantLocked(tenant)
	if err != nil {
		return 0, nil, err
	}
	return t.current, t.keks[t.current].Seal(nil, plaintext, ad(tenant, t.current, aad)), nil
}

func (p *memProvider) Unwrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) ([]byte, error) {
	if err := p.check(ctx, tenant, false); err != nil {
		return nil, err
	}
	p.m.mu.Lock()
	t, err := p.m.tenantLocked(tenant)
	var kek *cryptocore.AEAD
	if err == nil {
		kek = t.keks[version]
	}
	p.m.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if kek == nil {
		return nil, fmt.Errorf("tenant %q: %w %d", tenant, keys.ErrUnknownKeyVersion, version)
	}
	pt, err := kek.Open(nil, ciphertext, ad(tenant, version, aad))
	if err != nil {
		return nil, fmt.Errorf("unwrap for tenant %q: %w", tenant, keys.ErrAuth)
	}
	return pt, nil
}

func (p *memProvider) Health(ctx context.Context) error { return ctxErr(ctx) }

func (p *memProvider) Close() error { return nil }
