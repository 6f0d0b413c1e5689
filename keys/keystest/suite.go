// Package keystest is the conformance suite every keys.KEKProvider backend
// runs (Run), and small in-memory fakes for other packages' unit tests
// (Memory).
//
// Decisions the suite pins down for every backend:
//   - Tenant-scoped credentials are data-plane only: they may Wrap, Unwrap,
//     read their own tenant (Tenant, Tenants, Health) and nothing else. Rotate,
//     Retire, Shred and CreateTenant with them fail with ErrPermissionDenied,
//     even for their own tenant: a compromised workload must not be able to
//     destroy or roll its tenant's keys.
//   - For another tenant they fail with ErrPermissionDenied or, where the
//     backend cannot tell the two apart, ErrUnknownTenant.
//   - A tampered ciphertext (any byte flipped, truncated, empty) is ErrAuth;
//     a ciphertext presented under a version that does not exist is
//     ErrUnknownKeyVersion, under another existing version ErrAuth or
//     ErrUnknownKeyVersion.
//   - Wrap rejects more than keys.MaxWrapSize bytes with an error.
//   - A tenant-scoped provider sees the admin's later rotations without being
//     reopened.
package keystest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

// Harness connects the suite to one backend. Providers it returns are owned
// by the harness, which closes them (t.Cleanup); the suite never calls Close
// except in the Close subtest on a provider it asked for just for that.
type Harness struct {
	// Admin returns a provider with admin credentials. It may return the same
	// provider on every call.
	Admin func(t *testing.T) keys.KEKProvider
	// ForTenant returns a provider holding credentials scoped to tenant. The
	// suite calls it only after Admin's provider created the tenant, so a
	// backend may issue the credentials at creation (the local keyring's
	// access key) or now (a Vault token under the tenant's policy).
	ForTenant func(t *testing.T, tenant string) keys.KEKProvider
	// Prefix starts every tenant name the suite makes, so that runs against
	// a long-lived server do not collide (shredded names are never reusable).
	// Empty means a random prefix per Run. At most 20 characters, a valid
	// start of a DNS-1123 label.
	Prefix string
	// Concurrency is the number of goroutines in the concurrency subtest;
	// 0 means 8.
	Concurrency int
	// OpsPerGoroutine is the number of wrap+unwrap pairs each goroutine does;
	// 0 means 25.
	OpsPerGoroutine int
}

type suite struct {
	h      Harness
	prefix string
	mu     sync.Mutex
	n      int
}

// tenant returns a fresh tenant name for this run.
func (s *suite) tenant(short string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return fmt.Sprintf("%s-%s-%d", s.prefix, short, s.n)
}

// Run runs the conformance suite against the backend behind h.
func Run(t *testing.T, h Harness) {
	if h.Admin == nil || h.ForTenant == nil {
		t.Fatal("keystest: Harness.Admin and Harness.ForTenant are required")
	}
	s := &suite{h: h, prefix: h.Prefix}
	if s.prefix == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		s.prefix = "kt" + hex.EncodeToString(b[:])
	}
	if len(s.prefix) > 20 || keys.ValidTenant(s.prefix) != nil {
		t.Fatalf("keystest: Harness.Prefix %q must be a DNS-1123 label of at most 20 characters", s.prefix)
	}
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"Name", s.testName},
		{"Health", s.testHealth},
		{"CreateAndExists", s.testCreate},
		{"RoundTrip", s.testRoundTrip},
		{"AADMismatch", s.testAADMismatch},
		{"Tamper", s.testTamper},
		{"WrongVersion", s.testWrongVersion},
		{"UnknownTenant", s.testUnknownTenant},
		{"Rotate", s.testRotate},
		{"Retire", s.testRetire},
		{"Shred", s.testShred},
		{"TenantIsolation", s.testIsolation},
		{"TenantSeesRotation", s.testTenantSeesRotation},
		{"MaxWrapSize", s.testMaxWrapSize},
		{"Concurrent", s.testConcurrent},
		{"InvalidTenant", s.testInvalidTenant},
		{"CancelledContext", s.testCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// create makes a new tenant with the admin provider.
func (s *suite) create(t *testing.T, p keys.KEKProvider, short string) string {
	t.Helper()
	name := s.tenant(short)
	if err := p.CreateTenant(t.Context(), name); err != nil {
		t.Fatalf("CreateTenant(%q): %v", name, err)
	}
	return name
}

func wrap(t *testing.T, p keys.KEKProvider, tenant string, pt, aad []byte) (uint32, []byte) {
	t.Helper()
	v, ct, err := p.Wrap(t.Context(), tenant, pt, aad)
	if err != nil {
		t.Fatalf("Wrap(%q): %v", tenant, err)
	}
	if v == 0 {
		t.Fatalf("Wrap(%q) returned version 0; versions start at 1", tenant)
	}
	if len(pt) >= 16 && bytes.Contains(ct, pt) {
		t.Fatalf("Wrap(%q): ciphertext contains the plaintext", tenant)
	}
	return v, ct
}

func mustUnwrap(t *testing.T, p keys.KEKProvider, tenant string, v uint32, ct, aad, want []byte) {
	t.Helper()
	got, err := p.Unwrap(t.Context(), tenant, v, ct, aad)
	if err != nil {
		t.Fatalf("Unwrap(%q, v%d): %v", tenant, v, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Unwrap(%q, v%d) returned other bytes than were wrapped", tenant, v)
	}
}

// wantErr fails unless err matches one of targets.
func wantErr(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	names := make([]string, len(targets))
	for i, target := range targets {
		names[i] = fmt.Sprintf("%q", target)
	}
	t.Fatalf("%s: got error %v, want one matching %s", what, err, strings.Join(names, " or "))
}

func info(t *testing.T, p keys.KEKProvider, tenant string) keys.TenantInfo {
	t.Helper()
	ti, err := p.Tenant(t.Context(), tenant)
	if err != nil {
		t.Fatalf("Tenant(%q): %v", tenant, err)
	}
	if ti.Tenant != tenant {
		t.Fatalf("Tenant(%q) returned info for %q", tenant, ti.Tenant)
	}
	return ti
}

func (s *suite) testName(t *testing.T) {
	p := s.h.Admin(t)
	n := p.Name()
	if n == "" || n != p.Name() {
		t.Fatalf("Name() = %q, want a stable non-empty name", n)
	}
	if keys.ValidTenant(n) != nil || len(n) > 16 {
		t.Fatalf("Name() = %q, want lower-case letters, digits and '-', at most 16 characters (it is recorded in wrapped keys)", n)
	}
}

func (s *suite) testHealth(t *testing.T) {
	a := s.h.Admin(t)
	if err := a.Health(t.Context()); err != nil {
		t.Fatalf("admin Health: %v", err)
	}
	tenant := s.create(t, a, "health")
	if err := s.h.ForTenant(t, tenant).Health(t.Context()); err != nil {
		t.Fatalf("tenant Health: %v", err)
	}
}

func (s *suite) testCreate(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	tenant := s.create(t, a, "create")
	ti := info(t, a, tenant)
	if ti.Current != 1 || ti.MinVersion != 1 || ti.Shredded {
		t.Fatalf("new tenant: %+v, want current 1, min 1, not shredded", ti)
	}
	wantErr(t, "second CreateTenant", a.CreateTenant(ctx, tenant), keys.ErrTenantExists)
	all, err := a.Tenants(ctx)
	if err != nil {
		t.Fatalf("Tenants: %v", err)
	}
	found := false
	for _, x := range all {
		found = found || x.Tenant == tenant
	}
	if !found {
		t.Fatalf("Tenants() does not list new tenant %q", tenant)
	}
}

func (s *suite) testRoundTrip(t *testing.T) {
	a := s.h.Admin(t)
	tenant := s.create(t, a, "rt")
	tp := s.h.ForTenant(t, tenant)
	for _, size := range []int{1, 16, 32, 48, keys.MaxWrapSize} {
		t.Run(fmt.Sprintf("%dB", size), func(t *testing.T) {
			pt, aad := randBytes(size), []byte("tenant="+tenant+" purpose=test")
			v, ct := wrap(t, a, tenant, pt, aad)
			if v != 1 {
				t.Fatalf("Wrap on a new tenant used version %d, want 1", v)
			}
			mustUnwrap(t, a, tenant, v, ct, aad, pt)
			mustUnwrap(t, tp, tenant, v, ct, aad, pt)
			// And the other way: the tenant wraps, the admin unwraps.
			v2, ct2 := wrap(t, tp, tenant, pt, aad)
			mustUnwrap(t, a, tenant, v2, ct2, aad, pt)
		})
	}
}

func (s *suite) testAADMismatch(t *testing.T) {
	a := s.h.Admin(t)
	tenant := s.create(t, a, "aad")
	pt := randBytes(32)
	aad := []byte("tenant=blue purpose=file")
	v, ct := wrap(t, a, tenant, pt, aad)
	tests := []struct {
		name string
		aad  []byte
	}{
		{"other purpose", []byte("tenant=blue purpose=volume")},
		{"other tenant", []byte("tenant=red purpose=file")},
		{"one byte longer", append(append([]byte{}, aad...), 0)},
		{"one byte shorter", aad[:len(aad)-1]},
		{"empty", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := a.Unwrap(t.Context(), tenant, v, ct, tt.aad)
			wantErr(t, "Unwrap with other aad", err, keys.ErrAuth)
			if got != nil {
				t.Fatal("Unwrap returned plaintext along with its error")
			}
		})
	}
}

func (s *suite) testTamper(t *testing.T) {
	a := s.h.Admin(t)
	tenant := s.create(t, a, "tamper")
	pt, aad := randBytes(32), []byte("aad")
	v, ct := wrap(t, a, tenant, pt, aad)
	ctx := t.Context()
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		got, err := a.Unwrap(ctx, tenant, v, bad, aad)
		if !errors.Is(err, keys.ErrAuth) || got != nil {
			t.Fatalf("Unwrap with byte %d of %d flipped: got (%d bytes, %v), want ErrAuth and no plaintext", i, len(ct), len(got), err)
		}
	}
	cuts := []struct {
		name string
		ct   []byte
	}{
		{"empty", nil},
		{"first byte", ct[:1]},
		{"last byte dropped", ct[:len(ct)-1]},
		{"half", ct[:len(ct)/2]},
		{"byte appended", append(bytes.Clone(ct), 0)},
	}
	for _, c := range cuts {
		t.Run(c.name, func(t *testing.T) {
			_, err := a.Unwrap(ctx, tenant, v, c.ct, aad)
			wantErr(t, "Unwrap of a cut ciphertext", err, keys.ErrAuth)
		})
	}
	// The original still opens: the suite changed copies only.
	mustUnwrap(t, a, tenant, v, ct, aad, pt)
}

func (s *suite) testWrongVersion(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	tenant := s.create(t, a, "ver")
	pt, aad := randBytes(32), []byte("aad")
	v, ct := wrap(t, a, tenant, pt, aad)
	_, err := a.Unwrap(ctx, tenant, v+1, ct, aad)
	wantErr(t, "Unwrap under a version never created", err, keys.ErrUnknownKeyVersion)
	_, err = a.Unwrap(ctx, tenant, 0, ct, aad)
	wantErr(t, "Unwrap under version 0", err, keys.ErrUnknownKeyVersion, keys.ErrAuth)
	_, err = a.Unwrap(ctx, tenant, 1<<31, ct, aad)
	wantErr(t, "Unwrap under version 2^31", err, keys.ErrUnknownKeyVersion)
	if _, err := a.Rotate(ctx, tenant); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	_, err = a.Unwrap(ctx, tenant, v+1, ct, aad)
	wantErr(t, "Unwrap of a v1 ciphertext claimed as v2", err, keys.ErrAuth, keys.ErrUnknownKeyVersion)
	v2, ct2 := wrap(t, a, tenant, pt, aad)
	_, err = a.Unwrap(ctx, tenant, v, ct2, aad)
	wantErr(t, "Unwrap of a v2 ciphertext claimed as v1", err, keys.ErrAuth, keys.ErrUnknownKeyVersion)
	mustUnwrap(t, a, tenant, v2, ct2, aad, pt)
}

func (s *suite) testUnknownTenant(t *testing.T) {
	a := s.h.Admin(t)
	// A second tenant proves the backend is working while the first is unknown.
	known := s.create(t, a, "known")
	_, ct := wrap(t, a, known, randBytes(32), nil)
	ghost := s.tenant("ghost")
	ctx := t.Context()
	ops := []struct {
		name string
		call func() error
	}{
		{"Wrap", func() error { _, _, err := a.Wrap(ctx, ghost, randBytes(32), nil); return err }},
		{"Unwrap", func() error { _, err := a.Unwrap(ctx, ghost, 1, ct, nil); return err }},
		{"Tenant", func() error { _, err := a.Tenant(ctx, ghost); return err }},
		{"Rotate", func() error { _, err := a.Rotate(ctx, ghost); return err }},
		{"Retire", func() error { return a.Retire(ctx, ghost, 1) }},
		{"Shred", func() error { return a.Shred(ctx, ghost) }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			wantErr(t, op.name+" on a tenant never created", op.call(), keys.ErrUnknownTenant)
		})
	}
}

func (s *suite) testRotate(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	tenant := s.create(t, a, "rot")
	pt1, aad := randBytes(32), []byte("aad")
	v1, ct1 := wrap(t, a, tenant, pt1, aad)
	for want := uint32(2); want <= 3; want++ {
		got, err := a.Rotate(ctx, tenant)
		if err != nil {
			t.Fatalf("Rotate: %v", err)
		}
		if got != want {
			t.Fatalf("Rotate returned version %d, want %d", got, want)
		}
		ti := info(t, a, tenant)
		if ti.Current != want || ti.MinVersion != 1 {
			t.Fatalf("after rotation to %d: %+v, want current %d and min 1", want, ti, want)
		}
		pt := randBytes(32)
		v, ct := wrap(t, a, tenant, pt, aad)
		if v != want {
			t.Fatalf("Wrap after rotation used version %d, want %d", v, want)
		}
		mustUnwrap(t, a, tenant, v, ct, aad, pt)
	}
	mustUnwrap(t, a, tenant, v1, ct1, aad, pt1)
}

func (s *suite) testRetire(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	tenant := s.create(t, a, "retire")
	aad := []byte("aad")
	pts := map[uint32][]byte{}
	cts := map[uint32][]byte{}
	for i := 0; i < 3; i++ {
		if i > 0 {
			if _, err := a.Rotate(ctx, tenant); err != nil {
				t.Fatalf("Rotate: %v", err)
			}
		}
		pt := randBytes(32)
		v, ct := wrap(t, a, tenant, pt, aad)
		pts[v], cts[v] = pt, ct
	}
	if len(cts) != 3 || cts[3] == nil {
		t.Fatalf("after two rotations the wraps used versions %v, want 1, 2, 3", cts)
	}
	if err := a.Retire(ctx, tenant, 4); err == nil {
		t.Fatal("Retire above the current version succeeded; it must fail and keep every version")
	}
	mustUnwrap(t, a, tenant, 1, cts[1], aad, pts[1])
	if err := a.Retire(ctx, tenant, 2); err != nil {
		t.Fatalf("Retire(2): %v", err)
	}
	_, err := a.Unwrap(ctx, tenant, 1, cts[1], aad)
	wantErr(t, "Unwrap under a retired version", err, keys.ErrUnknownKeyVersion)
	mustUnwrap(t, a, tenant, 2, cts[2], aad, pts[2])
	mustUnwrap(t, a, tenant, 3, cts[3], aad, pts[3])
	ti := info(t, a, tenant)
	if ti.MinVersion != 2 || ti.Current != 3 {
		t.Fatalf("after Retire(2): %+v, want min 2 and current 3", ti)
	}
	// Retiring to the current version keeps only it, and Wrap still works.
	if err := a.Retire(ctx, tenant, 3); err != nil {
		t.Fatalf("Retire(3): %v", err)
	}
	_, err = a.Unwrap(ctx, tenant, 2, cts[2], aad)
	wantErr(t, "Unwrap under a retired version", err, keys.ErrUnknownKeyVersion)
	mustUnwrap(t, a, tenant, 3, cts[3], aad, pts[3])
	pt := randBytes(32)
	v, ct := wrap(t, a, tenant, pt, aad)
	if v != 3 {
		t.Fatalf("Wrap after retiring to 3 used version %d", v)
	}
	mustUnwrap(t, a, tenant, v, ct, aad, pt)
}

func (s *suite) testShred(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	tenant := s.create(t, a, "shred")
	other := s.create(t, a, "bystander")
	aad := []byte("aad")
	pt := randBytes(32)
	v, ct := wrap(t, a, tenant, pt, aad)
	opt := randBytes(32)
	ov, oct := wrap(t, a, other, opt, aad)
	tp := s.h.ForTenant(t, tenant)
	if _, err := a.Rotate(ctx, tenant); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if err := a.Shred(ctx, tenant); err != nil {
		t.Fatalf("Shred: %v", err)
	}
	for name, p := range map[string]keys.KEKProvider{"admin": a, "tenant": tp} {
		t.Run(name, func(t *testing.T) {
			got, err := p.Unwrap(ctx, tenant, v, ct, aad)
			wantErr(t, "Unwrap after Shred", err, keys.ErrShredded)
			if got != nil {
				t.Fatal("Unwrap after Shred returned plaintext")
			}
			_, _, err = p.Wrap(ctx, tenant, pt, aad)
			wantErr(t, "Wrap after Shred", err, keys.ErrShredded)
		})
	}
	wantErr(t, "CreateTenant of a shredded name", a.CreateTenant(ctx, tenant), keys.ErrShredded)
	_, err := a.Rotate(ctx, tenant)
	wantErr(t, "Rotate after Shred", err, keys.ErrShredded)
	ti, err := a.Tenant(ctx, tenant)
	if err == nil && !ti.Shredded {
		t.Fatalf("Tenant after Shred: %+v, want Shredded or ErrShredded", ti)
	}
	if err != nil {
		wantErr(t, "Tenant after Shred", err, keys.ErrShredded)
	}
	// Shredding one tenant leaves the others alone.
	mustUnwrap(t, a, other, ov, oct, aad, opt)
}

// testIsolation checks that blue's scoped credentials reach nothing of red's
// and cannot manage even blue.
func (s *suite) testIsolation(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	blue, red := s.create(t, a, "blue"), s.create(t, a, "red")
	bp := s.h.ForTenant(t, blue)
	aad := []byte("aad")
	rpt := randBytes(32)
	rv, rct := wrap(t, a, red, rpt, aad)
	bpt := randBytes(32)
	bv, bct := wrap(t, bp, blue, bpt, aad)
	mustUnwrap(t, bp, blue, bv, bct, aad, bpt)
	denied := []error{keys.ErrPermissionDenied, keys.ErrUnknownTenant}
	other := []struct {
		name string
		call func() error
	}{
		{"Unwrap red", func() error { _, err := bp.Unwrap(ctx, red, rv, rct, aad); return err }},
		{"Wrap red", func() error { _, _, err := bp.Wrap(ctx, red, rpt, aad); return err }},
		{"Tenant red", func() error { _, err := bp.Tenant(ctx, red); return err }},
		{"Rotate red", func() error { _, err := bp.Rotate(ctx, red); return err }},
		{"Retire red", func() error { return bp.Retire(ctx, red, 1) }},
		{"Shred red", func() error { return bp.Shred(ctx, red) }},
		{"CreateTenant", func() error { return bp.CreateTenant(ctx, s.tenant("newbyblue")) }},
	}
	for _, op := range other {
		t.Run(op.name, func(t *testing.T) { wantErr(t, "blue's credentials: "+op.name, op.call(), denied...) })
	}
	self := []struct {
		name string
		call func() error
	}{
		{"Rotate blue", func() error { _, err := bp.Rotate(ctx, blue); return err }},
		{"Retire blue", func() error { return bp.Retire(ctx, blue, 1) }},
		{"Shred blue", func() error { return bp.Shred(ctx, blue) }},
	}
	for _, op := range self {
		t.Run(op.name, func(t *testing.T) {
			wantErr(t, "tenant credentials are data-plane only: "+op.name, op.call(), keys.ErrPermissionDenied)
		})
	}
	t.Run("red ciphertext as blue's", func(t *testing.T) {
		got, err := bp.Unwrap(ctx, blue, rv, rct, aad)
		if got != nil || !errors.Is(err, keys.ErrAuth) && !errors.Is(err, keys.ErrUnknownKeyVersion) {
			t.Fatalf("blue unwrapping red's ciphertext under blue's name: got (%d bytes, %v), want ErrAuth", len(got), err)
		}
	})
	t.Run("Tenants", func(t *testing.T) {
		all, err := bp.Tenants(ctx)
		if err != nil {
			wantErr(t, "blue's Tenants()", err, keys.ErrPermissionDenied)
			return
		}
		for _, ti := range all {
			if ti.Tenant != blue {
				t.Fatalf("blue's Tenants() lists %q", ti.Tenant)
			}
		}
	})
	// Nothing blue tried changed anything.
	if ti := info(t, a, blue); ti.Current != 1 || ti.Shredded {
		t.Fatalf("blue after blue's attempts: %+v, want current 1, not shredded", ti)
	}
	if ti := info(t, a, red); ti.Current != 1 || ti.Shredded {
		t.Fatalf("red after blue's attempts: %+v, want current 1, not shredded", ti)
	}
	mustUnwrap(t, a, red, rv, rct, aad, rpt)
	mustUnwrap(t, bp, blue, bv, bct, aad, bpt)
}

func (s *suite) testTenantSeesRotation(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	tenant := s.create(t, a, "follow")
	tp := s.h.ForTenant(t, tenant)
	pt, aad := randBytes(32), []byte("aad")
	v1, ct1 := wrap(t, tp, tenant, pt, aad)
	if _, err := a.Rotate(ctx, tenant); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	v2, ct2 := wrap(t, tp, tenant, pt, aad)
	if v2 != v1+1 {
		t.Fatalf("tenant Wrap after the admin rotated used version %d, want %d", v2, v1+1)
	}
	mustUnwrap(t, tp, tenant, v1, ct1, aad, pt)
	mustUnwrap(t, a, tenant, v2, ct2, aad, pt)
	if ti := info(t, tp, tenant); ti.Current != v2 {
		t.Fatalf("tenant's Tenant() after rotation: %+v, want current %d", ti, v2)
	}
}

func (s *suite) testMaxWrapSize(t *testing.T) {
	a := s.h.Admin(t)
	tenant := s.create(t, a, "max")
	pt := randBytes(keys.MaxWrapSize)
	v, ct := wrap(t, a, tenant, pt, nil)
	mustUnwrap(t, a, tenant, v, ct, nil, pt)
	if _, _, err := a.Wrap(t.Context(), tenant, randBytes(keys.MaxWrapSize+1), nil); err == nil {
		t.Fatalf("Wrap of %d bytes succeeded; keys.MaxWrapSize is %d", keys.MaxWrapSize+1, keys.MaxWrapSize)
	}
}

func (s *suite) testConcurrent(t *testing.T) {
	a := s.h.Admin(t)
	tenant := s.create(t, a, "conc")
	tp := s.h.ForTenant(t, tenant)
	workers, ops := s.h.Concurrency, s.h.OpsPerGoroutine
	if workers == 0 {
		workers = 8
	}
	if ops == 0 {
		ops = 25
	}
	ctx := t.Context()
	errs := make(chan error, workers+1)
	var wg sync.WaitGroup
	for w := range workers {
		p := a
		if w%2 == 1 {
			p = tp
		}
		wg.Go(func() {
			for i := range ops {
				pt, aad := randBytes(32), []byte(fmt.Sprintf("w%d-%d", w, i))
				v, ct, err := p.Wrap(ctx, tenant, pt, aad)
				if err != nil {
					errs <- fmt.Errorf("worker %d Wrap %d: %w", w, i, err)
					return
				}
				got, err := p.Unwrap(ctx, tenant, v, ct, aad)
				if err != nil {
					errs <- fmt.Errorf("worker %d Unwrap %d (v%d): %w", w, i, v, err)
					return
				}
				if !bytes.Equal(got, pt) {
					errs <- fmt.Errorf("worker %d op %d: Unwrap returned other bytes", w, i)
					return
				}
			}
		})
	}
	// Rotations race with the wraps: every wrap must still open under the
	// version it reported.
	wg.Go(func() {
		for range 2 {
			if _, err := a.Rotate(ctx, tenant); err != nil {
				errs <- fmt.Errorf("concurrent Rotate: %w", err)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if ti := info(t, a, tenant); ti.Current != 3 {
		t.Fatalf("after two concurrent rotations: %+v, want current 3", ti)
	}
}

func (s *suite) testInvalidTenant(t *testing.T) {
	ctx := t.Context()
	a := s.h.Admin(t)
	names := []string{"", "Blue", "-blue", "blue-", "blu_e", "blue.red", "../etc", "a/b", "blue ", strings.Repeat("a", 64), "bl\x00ue"}
	for _, name := range names {
		t.Run(fmt.Sprintf("%q", name), func(t *testing.T) {
			wantErr(t, "CreateTenant", a.CreateTenant(ctx, name), keys.ErrInvalidTenant)
			_, _, err := a.Wrap(ctx, name, randBytes(32), nil)
			wantErr(t, "Wrap", err, keys.ErrInvalidTenant)
			_, err = a.Unwrap(ctx, name, 1, randBytes(60), nil)
			wantErr(t, "Unwrap", err, keys.ErrInvalidTenant)
			_, err = a.Tenant(ctx, name)
			wantErr(t, "Tenant", err, keys.ErrInvalidTenant)
			_, err = a.Rotate(ctx, name)
			wantErr(t, "Rotate", err, keys.ErrInvalidTenant)
			wantErr(t, "Retire", a.Retire(ctx, name, 1), keys.ErrInvalidTenant)
			wantErr(t, "Shred", a.Shred(ctx, name), keys.ErrInvalidTenant)
		})
	}
}

func (s *suite) testCancelled(t *testing.T) {
	a := s.h.Admin(t)
	tenant := s.create(t, a, "ctx")
	_, ct := wrap(t, a, tenant, randBytes(32), nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, keys.ErrBackendUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: got %v, want context.Canceled wrapped in ErrBackendUnavailable", what, err)
		}
	}
	_, _, err := a.Wrap(ctx, tenant, randBytes(32), nil)
	check("Wrap", err)
	_, err = a.Unwrap(ctx, tenant, 1, ct, nil)
	check("Unwrap", err)
	_, err = a.Rotate(ctx, tenant)
	check("Rotate", err)
	if ti := info(t, a, tenant); ti.Current != 1 {
		t.Fatalf("Rotate with a cancelled context changed the tenant: %+v", ti)
	}
}
