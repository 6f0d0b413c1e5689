package pkcs11_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	p11 "github.com/miekg/pkcs11"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/keys/pkcs11"
	"github.com/tencrypt/tencrypt/keys/pkcs11/hsmtest"
)

// open opens a provider and closes it when the test ends.
func open(t *testing.T, cfg pkcs11.Config) *pkcs11.Provider {
	t.Helper()
	p, err := pkcs11.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// newTenant returns a fresh tenant name, created on its own new token.
var tenantSeq struct {
	sync.Mutex
	n int
}

func newTenant(t *testing.T, a *pkcs11.Provider, short string) string {
	t.Helper()
	tenantSeq.Lock()
	tenantSeq.n++
	name := fmt.Sprintf("%s-%d", short, tenantSeq.n)
	tenantSeq.Unlock()
	if err := a.CreateTenant(t.Context(), name); err != nil {
		t.Fatalf("CreateTenant(%q): %v", name, err)
	}
	return name
}

// TestConformance runs the keys conformance suite against real SoftHSM2:
// the admin creates every tenant's token with the SO PIN, and each tenant
// provider logs in to its own token with its own PIN.
func TestConformance(t *testing.T) {
	keystest.Run(t, keystest.Harness{
		Admin:     func(t *testing.T) keys.KEKProvider { return open(t, hsm.Admin()) },
		ForTenant: func(t *testing.T, tenant string) keys.KEKProvider { return open(t, hsm.Tenant(tenant)) },
	})
}

// TestOperatorMadeToken uses a token an operator initialised with
// softhsm2-util (no SO PIN given to tencrypt): CreateTenant only generates
// the KEK on it.
var operatorRuns int

func TestOperatorMadeToken(t *testing.T) {
	cfg := hsm.Admin()
	cfg.SOPINFile = ""
	a := open(t, cfg)
	// The token outlives a run (go test -count=N): the first creates the KEK.
	operatorRuns++
	if err := a.CreateTenant(t.Context(), preBlue); operatorRuns == 1 && err != nil || operatorRuns > 1 && !errors.Is(err, keys.ErrTenantExists) {
		t.Fatalf("CreateTenant(%q) on its operator-made token (run %d): %v", preBlue, operatorRuns, err)
	}
	tp := open(t, hsm.Tenant(preBlue))
	pt, aad := randBytes(32), []byte("purpose=test")
	v, ct, err := tp.Wrap(t.Context(), preBlue, pt, aad)
	if err != nil {
		t.Fatalf("Wrap: %v", err)
	}
	got, err := a.Unwrap(t.Context(), preBlue, v, ct, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("admin Unwrap of the tenant's wrap: %v", err)
	}
	// Without the SO PIN, a tenant with no token cannot be created, and the
	// error says how to make one.
	err = a.CreateTenant(t.Context(), "no-token-yet")
	if err == nil || !strings.Contains(err.Error(), "softhsm2-util --init-token") {
		t.Fatalf("CreateTenant without a token or SO PIN: %v, want advice to initialise a token", err)
	}
}

// TestWrongPIN: a wrong PIN is ErrAuth, whether the token itself refuses it
// or this process already has the token open with the right one (the
// library would accept any PIN then, so the provider compares).
func TestWrongPIN(t *testing.T) {
	dir := t.TempDir()
	pinFile := func(pin string) string {
		f := filepath.Join(dir, fmt.Sprintf("pin-%d", len(pin)))
		if err := os.WriteFile(f, []byte(pin+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// Keep pre-blue's token open with its right PIN for the second case.
	open(t, hsm.Tenant(preBlue))
	// byToken: the token itself answered CKR_PIN_INCORRECT, rather than
	// the provider's check for a token this process has open.
	tests := []struct {
		name    string
		tenant  string
		pin     string
		byToken bool
	}{
		{"token refuses", preLone, "wrong-pin-1", true},
		{"token already open in this process", preBlue, "wrong-pin-22", false},
		{"another tenant's PIN", preRed, prePIN[preBlue], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := pkcs11.Config{Module: hsmtest.Module, Tenant: tt.tenant, PINFile: pinFile(tt.pin)}
			p, err := pkcs11.Open(t.Context(), cfg)
			if err == nil {
				_ = p.Close()
				t.Fatalf("Open(%s) with a wrong PIN succeeded", tt.tenant)
			}
			if !errors.Is(err, keys.ErrAuth) {
				t.Fatalf("Open(%s) with a wrong PIN: %v, want ErrAuth", tt.tenant, err)
			}
			if byToken := errors.Is(err, p11.Error(p11.CKR_PIN_INCORRECT)); byToken != tt.byToken {
				t.Fatalf("Open(%s) with a wrong PIN: %v; refused by the token: %v, want %v", tt.tenant, err, byToken, tt.byToken)
			}
		})
	}
}

func TestModuleErrors(t *testing.T) {
	notALibrary := filepath.Join(t.TempDir(), "libnot.so")
	if err := os.WriteFile(notALibrary, []byte("not an ELF file"), 0o644); err != nil {
		t.Fatal(err)
	}
	pinFile := filepath.Join(hsm.PINDir, preRed)
	tests := []struct {
		name   string
		module string
		advice string
	}{
		{"missing", "/nonexistent/libsofthsm2.so", "scripts/setup"},
		{"not a library", notALibrary, "could not load"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pkcs11.Open(t.Context(), pkcs11.Config{Module: tt.module, Tenant: preRed, PINFile: pinFile})
			if !errors.Is(err, keys.ErrBackendUnavailable) || !strings.Contains(err.Error(), tt.advice) {
				t.Fatalf("Open with module %s: %v, want ErrBackendUnavailable saying %q", tt.module, err, tt.advice)
			}
			if !strings.Contains(err.Error(), tt.module) {
				t.Fatalf("error %q does not name the module path", err)
			}
		})
	}
}

func TestTokenMissing(t *testing.T) {
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := pkcs11.Open(t.Context(), pkcs11.Config{Module: hsmtest.Module, Tenant: "no-such-tenant", PINFile: pinFile})
	if !errors.Is(err, keys.ErrBackendUnavailable) || !strings.Contains(err.Error(), `no token labelled "tencrypt-no-such-tenant"`) {
		t.Fatalf("Open for a tenant without a token: %v, want ErrBackendUnavailable naming the token", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  pkcs11.Config
		want string
	}{
		{"no credentials", pkcs11.Config{}, "no credentials"},
		{"tenant without PIN", pkcs11.Config{Tenant: "blue"}, "exactly one of pin and pin_file"},
		{"tenant with both PINs", pkcs11.Config{Tenant: "blue", PIN: "1", PINFile: "/x"}, "exactly one of pin and pin_file"},
		{"tenant and admin", pkcs11.Config{Tenant: "blue", PIN: "1", PINDir: dir}, "not both"},
		{"invalid tenant", pkcs11.Config{Tenant: "Blue", PIN: "1"}, "DNS-1123"},
		{"tenant with SO PIN", pkcs11.Config{Tenant: "blue", PIN: "1", SOPINFile: "/x"}, "so_pin_file is for the admin"},
		{"admin with PIN", pkcs11.Config{PINDir: dir, PIN: "1"}, "an admin reads"},
		{"pin_dir missing", pkcs11.Config{PINDir: filepath.Join(dir, "nope")}, "is not a directory"},
		{"pool size", pkcs11.Config{PINDir: dir, PoolSize: -1}, "pool_size"},
		{"long prefix", pkcs11.Config{PINDir: dir, TokenPrefix: strings.Repeat("p", 17)}, "token_prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := pkcs11.Open(t.Context(), tt.cfg)
			if err == nil {
				_ = p.Close()
				t.Fatalf("Open(%v) succeeded", tt.cfg)
			}
			if !errors.Is(err, pkcs11.ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open(%v): %v, want ErrConfig saying %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// TestKEKNeverLeavesToken asks the token itself: the KEK is sensitive and
// non-extractable, its value cannot be read, and it cannot be wrapped out,
// copied into an extractable key or made extractable.
func TestKEKNeverLeavesToken(t *testing.T) {
	a := open(t, hsm.Admin())
	tenant := newTenant(t, a, "extract")
	err := pkcs11.WithSession(t.Context(), a, tenant, func(c *p11.Ctx, s p11.SessionHandle) error {
		if err := c.FindObjectsInit(s, []*p11.Attribute{p11.NewAttribute(p11.CKA_LABEL, pkcs11.KEKLabel(tenant, 1))}); err != nil {
			return err
		}
		hs, _, err := c.FindObjects(s, 2)
		_ = c.FindObjectsFinal(s)
		if err != nil || len(hs) != 1 {
			return fmt.Errorf("finding KEK v1: %d objects, %v", len(hs), err)
		}
		kek := hs[0]
		attrs, err := c.GetAttributeValue(s, kek, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_EXTRACTABLE, nil),
			p11.NewAttribute(p11.CKA_SENSITIVE, nil),
			p11.NewAttribute(p11.CKA_NEVER_EXTRACTABLE, nil),
			p11.NewAttribute(p11.CKA_ALWAYS_SENSITIVE, nil),
			p11.NewAttribute(p11.CKA_TOKEN, nil),
			p11.NewAttribute(p11.CKA_VALUE_LEN, nil),
		})
		if err != nil {
			return fmt.Errorf("C_GetAttributeValue: %w", err)
		}
		want := []struct {
			name string
			val  []byte
		}{
			{"CKA_EXTRACTABLE", []byte{0}},
			{"CKA_SENSITIVE", []byte{1}},
			{"CKA_NEVER_EXTRACTABLE", []byte{1}},
			{"CKA_ALWAYS_SENSITIVE", []byte{1}},
			{"CKA_TOKEN", []byte{1}},
		}
		for i, w := range want {
			if !bytes.Equal(attrs[i].Value, w.val) {
				t.Errorf("%s = %v, want %v", w.name, attrs[i].Value, w.val)
			}
		}
		if n := attrs[5].Value; len(n) == 0 || n[0] != 32 {
			t.Errorf("CKA_VALUE_LEN = %v, want 32 (AES-256)", n)
		}
		if _, err := c.GetAttributeValue(s, kek, []*p11.Attribute{p11.NewAttribute(p11.CKA_VALUE, nil)}); !errors.Is(err, p11.Error(p11.CKR_ATTRIBUTE_SENSITIVE)) {
			t.Errorf("reading CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", err)
		}
		wrapper, err := c.GenerateKey(s, []*p11.Mechanism{p11.NewMechanism(p11.CKM_AES_KEY_GEN, nil)}, []*p11.Attribute{
			p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY),
			p11.NewAttribute(p11.CKA_KEY_TYPE, p11.CKK_AES),
			p11.NewAttribute(p11.CKA_VALUE_LEN, 32),
			p11.NewAttribute(p11.CKA_TOKEN, false),
			p11.NewAttribute(p11.CKA_WRAP, true),
		})
		if err != nil {
			return fmt.Errorf("generating a session wrapping key: %w", err)
		}
		defer func() { _ = c.DestroyObject(s, wrapper) }()
		for _, m := range []uint{p11.CKM_AES_KEY_WRAP_PAD, p11.CKM_AES_KEY_WRAP} {
			if out, err := c.WrapKey(s, []*p11.Mechanism{p11.NewMechanism(m, nil)}, wrapper, kek); err == nil {
				t.Errorf("C_WrapKey(mechanism %#x) took the KEK out (%d bytes)", m, len(out))
			} else if !errors.Is(err, p11.Error(p11.CKR_KEY_UNEXTRACTABLE)) {
				t.Errorf("C_WrapKey(mechanism %#x): %v, want CKR_KEY_UNEXTRACTABLE", m, err)
			}
		}
		if err := c.SetAttributeValue(s, kek, []*p11.Attribute{p11.NewAttribute(p11.CKA_EXTRACTABLE, true)}); err == nil {
			t.Error("C_SetAttributeValue made the KEK extractable")
		}
		if _, err := c.CopyObject(s, kek, []*p11.Attribute{p11.NewAttribute(p11.CKA_EXTRACTABLE, true), p11.NewAttribute(p11.CKA_TOKEN, false)}); err == nil {
			t.Error("C_CopyObject made an extractable copy of the KEK")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestShredLeavesTombstone: after Shred the token holds no key of the
// tenant, only the tombstone, and the admin lists the tenant as shredded.
func TestShredLeavesTombstone(t *testing.T) {
	ctx := t.Context()
	a := open(t, hsm.Admin())
	tenant := newTenant(t, a, "tomb")
	if _, err := a.Rotate(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if err := a.Shred(ctx, tenant); err != nil {
		t.Fatalf("Shred: %v", err)
	}
	if err := a.Shred(ctx, tenant); err != nil {
		t.Fatalf("second Shred: %v, want nil (finishing a shred is idempotent)", err)
	}
	err := pkcs11.WithSession(ctx, a, tenant, func(c *p11.Ctx, s p11.SessionHandle) error {
		count := func(template []*p11.Attribute) int {
			if err := c.FindObjectsInit(s, template); err != nil {
				t.Fatal(err)
			}
			hs, _, err := c.FindObjects(s, 16)
			_ = c.FindObjectsFinal(s)
			if err != nil {
				t.Fatal(err)
			}
			return len(hs)
		}
		if n := count([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_SECRET_KEY)}); n != 0 {
			t.Errorf("token holds %d secret keys after Shred, want 0", n)
		}
		if n := count([]*p11.Attribute{p11.NewAttribute(p11.CKA_CLASS, p11.CKO_DATA), p11.NewAttribute(p11.CKA_LABEL, pkcs11.TombstoneLabel(tenant))}); n != 1 {
			t.Errorf("token holds %d tombstones after Shred, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	all, err := a.Tenants(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, ti := range all {
		if ti.Tenant == tenant {
			found = true
			if !ti.Shredded || ti.Current != 0 {
				t.Errorf("Tenants() lists %+v, want shredded with no versions", ti)
			}
		}
	}
	if !found {
		t.Errorf("Tenants() does not list shredded tenant %q", tenant)
	}
}

// TestLongTenantName: a 63-character tenant gets a hashed token label that
// fits PKCS#11's 32 bytes, and works end to end.
func TestLongTenantName(t *testing.T) {
	a := open(t, hsm.Admin())
	tenantSeq.Lock()
	tenantSeq.n++
	tenant := fmt.Sprintf("%s-%04d", strings.Repeat("l", 58), tenantSeq.n)
	tenantSeq.Unlock()
	if err := a.CreateTenant(t.Context(), tenant); err != nil {
		t.Fatalf("CreateTenant(63 characters): %v", err)
	}
	tp := open(t, hsm.Tenant(tenant))
	pt := randBytes(32)
	v, ct, err := tp.Wrap(t.Context(), tenant, pt, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Unwrap(t.Context(), tenant, v, ct, nil)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap: %v", err)
	}
}

// TestCreateLeavesNoPINWithoutToken: when initialising the token fails, no
// PIN file (and no temp file) is left in pin_dir.
func TestCreateLeavesNoPINWithoutToken(t *testing.T) {
	a := open(t, hsm.Admin())
	tenant := newTenant(t, a, "orphan")
	pinPath := filepath.Join(hsm.PINDir, tenant)
	saved := pinPath + ".saved"
	if err := os.Rename(pinPath, saved); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Rename(saved, pinPath) })
	// The token exists but its PIN is "lost": create must refuse to make a
	// second token with the same label, and write nothing.
	err := a.CreateTenant(t.Context(), tenant)
	if err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("CreateTenant with the token present but no PIN: %v, want an error that the token exists", err)
	}
	entries, err := os.ReadDir(hsm.PINDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == tenant || strings.HasPrefix(e.Name(), "."+tenant) {
			t.Errorf("pin_dir holds %s after a failed create", e.Name())
		}
	}
}

// TestSmallPool: many goroutines share a one-session pool.
func TestSmallPool(t *testing.T) {
	cfg := hsm.Admin()
	cfg.PoolSize = 1
	a := open(t, cfg)
	tenant := newTenant(t, a, "pool")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				pt, aad := randBytes(32), []byte(fmt.Sprintf("%d/%d", w, i))
				v, ct, err := a.Wrap(t.Context(), tenant, pt, aad)
				if err == nil {
					var got []byte
					got, err = a.Unwrap(t.Context(), tenant, v, ct, aad)
					if err == nil && !bytes.Equal(got, pt) {
						err = errors.New("Unwrap returned other bytes")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCancelledBeforeCall: a cancelled context stops a call before it
// reaches the token.
func TestCancelledBeforeCall(t *testing.T) {
	a := open(t, hsm.Admin())
	tenant := newTenant(t, a, "cancel")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := a.Tenant(ctx, tenant)
	if !errors.Is(err, keys.ErrBackendUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Tenant with a cancelled context: %v", err)
	}
	if err := a.Health(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Health with a cancelled context: %v", err)
	}
}

func TestClosedProvider(t *testing.T) {
	p, err := pkcs11.Open(t.Context(), hsm.Admin())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Health(t.Context()); !errors.Is(err, keys.ErrBackendUnavailable) {
		t.Fatalf("Health after Close: %v, want ErrBackendUnavailable", err)
	}
	if _, _, err := p.Wrap(t.Context(), preRed, []byte("x"), nil); !errors.Is(err, keys.ErrBackendUnavailable) {
		t.Fatalf("Wrap after Close: %v, want ErrBackendUnavailable", err)
	}
}

// FuzzUnwrap: whatever the ciphertext, Unwrap returns the plaintext only
// for the ciphertext Wrap made, and ErrAuth otherwise.
func FuzzUnwrap(f *testing.F) {
	a, err := pkcs11.Open(context.Background(), hsm.Admin())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = a.Close() })
	tenantSeq.Lock()
	tenantSeq.n++
	tenant := fmt.Sprintf("fuzz-%d", tenantSeq.n)
	tenantSeq.Unlock()
	if err := a.CreateTenant(context.Background(), tenant); err != nil {
		f.Fatal(err)
	}
	pt, aad := []byte("0123456789abcdef0123456789abcdef"), []byte("aad")
	v, ct, err := a.Wrap(context.Background(), tenant, pt, aad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ct)
	f.Add(ct[:len(ct)-1])
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(append([]byte{2}, ct[1:]...))
	f.Add(bytes.Repeat([]byte{1}, 29))
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := a.Unwrap(context.Background(), tenant, v, in, aad)
		if bytes.Equal(in, ct) {
			if err != nil || !bytes.Equal(got, pt) {
				t.Fatalf("Unwrap of the real ciphertext: %v", err)
			}
			return
		}
		if !errors.Is(err, keys.ErrAuth) || got != nil {
			t.Fatalf("Unwrap of %x: (%d bytes, %v), want ErrAuth and nothing", in, len(got), err)
		}
	})
}

// BenchmarkWrap and BenchmarkUnwrap measure a 32-byte DEK through the
// token, tenant-scoped, with one goroutine per core sharing the pool.
func BenchmarkWrap(b *testing.B) {
	_, tenant := benchTenant(b)
	tp := openB(b, hsm.Tenant(tenant))
	dek, aad := randBytes(32), []byte("tenant="+tenant+" purpose=bench")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := tp.Wrap(context.Background(), tenant, dek, aad); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkUnwrap(b *testing.B) {
	_, tenant := benchTenant(b)
	tp := openB(b, hsm.Tenant(tenant))
	dek, aad := randBytes(32), []byte("tenant="+tenant+" purpose=bench")
	v, ct, err := tp.Wrap(context.Background(), tenant, dek, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tp.Unwrap(context.Background(), tenant, v, ct, aad); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func openB(b *testing.B, cfg pkcs11.Config) *pkcs11.Provider {
	b.Helper()
	p, err := pkcs11.Open(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	return p
}

func benchTenant(b *testing.B) (*pkcs11.Provider, string) {
	b.Helper()
	a := openB(b, hsm.Admin())
	tenantSeq.Lock()
	tenantSeq.n++
	tenant := fmt.Sprintf("bench-%d", tenantSeq.n)
	tenantSeq.Unlock()
	if err := a.CreateTenant(context.Background(), tenant); err != nil {
		b.Fatal(err)
	}
	return a, tenant
}
