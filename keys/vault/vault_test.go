package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/keys/vault"
	"github.com/tencrypt/tencrypt/keys/vault/vaulttest"
)

// server is the one Vault dev server the package's tests share; each test
// uses tenant names of its own.
var server *vaulttest.Server

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tencrypt-vault-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	server, err = vaulttest.StartServer(context.Background(), dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: keys/vault tests need a real Vault server: %v\n", err)
		return 1
	}
	defer server.Stop()
	return m.Run()
}

func provider(t *testing.T, s *vaulttest.Server, token string) *vault.Provider {
	t.Helper()
	p, err := vault.New(vault.Config{Addr: s.Addr, Token: token, Mount: s.Mount, Timeout: "20s"})
	if err != nil {
		t.Fatalf("vault.New: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func admin(t *testing.T) *vault.Provider {
	t.Helper()
	p := provider(t, server, server.RootToken)
	if err := p.Setup(t.Context()); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return p
}

// tenantProvider issues a token under the tenant's policy, so isolation in
// these tests is enforced by Vault, not by our code.
func tenantProvider(t *testing.T, tenant string) *vault.Provider {
	t.Helper()
	tok, err := admin(t).GrantTenant(t.Context(), tenant, time.Hour)
	if err != nil {
		t.Fatalf("GrantTenant(%q): %v", tenant, err)
	}
	return provider(t, server, tok.Secret())
}

func TestConformance(t *testing.T) {
	keystest.Run(t, keystest.Harness{
		Admin:     func(t *testing.T) keys.KEKProvider { return admin(t) },
		ForTenant: func(t *testing.T, tenant string) keys.KEKProvider { return tenantProvider(t, tenant) },
	})
}

// policyAdmin returns a provider whose token holds only AdminPolicy, not
// root: the documented admin policy must be enough for everything.
func policyAdmin(t *testing.T) *vault.Provider {
	t.Helper()
	return provider(t, server, policyAdminToken(t))
}

// policyAdminToken creates a token holding only AdminPolicy.
func policyAdminToken(t *testing.T) string {
	t.Helper()
	root := admin(t)
	c, err := api.NewClient(&api.Config{Address: server.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(server.RootToken)
	if err := c.Sys().PutPolicyWithContext(t.Context(), "tencrypt-admin", root.AdminPolicy()); err != nil {
		t.Fatalf("writing the admin policy: %v", err)
	}
	s, err := c.Auth().Token().CreateWithContext(t.Context(), &api.TokenCreateRequest{Policies: []string{"tencrypt-admin"}, TTL: "1h"})
	if err != nil {
		t.Fatalf("creating an admin token: %v", err)
	}
	return s.Auth.ClientToken
}

func TestConformancePolicyAdmin(t *testing.T) {
	a := policyAdmin(t)
	keystest.Run(t, keystest.Harness{
		Admin: func(*testing.T) keys.KEKProvider { return a },
		ForTenant: func(t *testing.T, tenant string) keys.KEKProvider {
			// An operator writes the tenant's policy once; the admin then
			// issues the tenant's tokens.
			if _, err := admin(t).GrantTenant(t.Context(), tenant, time.Minute); err != nil {
				t.Fatalf("GrantTenant(%q) as operator: %v", tenant, err)
			}
			tok, err := a.GrantTenant(t.Context(), tenant, time.Hour)
			if err != nil {
				t.Fatalf("GrantTenant(%q) with the admin policy: %v", tenant, err)
			}
			return provider(t, server, tok.Secret())
		},
	})
}

// TestAdminCannotWritePolicies: a token role hands out any policy whose name
// matches, so an admin able to write policies could grant itself anything.
func TestAdminCannotWritePolicies(t *testing.T) {
	tok := policyAdminToken(t)
	a := provider(t, server, tok)
	c, err := api.NewClient(&api.Config{Address: server.Addr})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tok)
	evil := `path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }`
	for _, name := range []string{"tencrypt-tenant-evil", "anything"} {
		if err := c.Sys().PutPolicyWithContext(t.Context(), name, evil); err == nil {
			t.Errorf("the admin token wrote policy %s", name)
		}
	}
	tenant := "nopolicy-" + strings.ToLower(suffix())
	if err := a.CreateTenant(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GrantTenant(t.Context(), tenant, time.Hour); !errors.Is(err, keys.ErrPermissionDenied) || !strings.Contains(err.Error(), "operator") {
		t.Errorf("GrantTenant by the admin for a tenant without a policy: %v, want ErrPermissionDenied telling to ask an operator", err)
	}
}

func TestRewrap(t *testing.T) {
	ctx := t.Context()
	a := admin(t)
	tenant := "rewrap-" + strings.ToLower(suffix())
	if err := a.CreateTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	tp := tenantProvider(t, tenant)
	pt, aad := []byte("0123456789abcdef0123456789abcdef"), []byte("tenant=x purpose=file")
	v1, ct1, err := tp.Wrap(ctx, tenant, pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Rotate(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	v2, ct2, err := tp.Rewrap(ctx, tenant, v1, ct1, aad)
	if err != nil {
		t.Fatalf("Rewrap: %v", err)
	}
	if v2 != 2 || !bytes.HasPrefix(ct2, []byte("vault:v2:")) {
		t.Fatalf("Rewrap gave version %d, %q; want 2 and a vault:v2: ciphertext", v2, ct2[:9])
	}
	// The aad stays bound through the rewrap: Vault's rewrap keeps the
	// derivation context.
	if _, err := tp.Unwrap(ctx, tenant, v2, ct2, []byte("tenant=x purpose=volume")); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("Unwrap of a rewrapped key with other aad: %v, want ErrAuth", err)
	}
	got, err := tp.Unwrap(ctx, tenant, v2, ct2, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Unwrap after Rewrap: %v", err)
	}
	if err := a.Retire(ctx, tenant, 2); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tp.Rewrap(ctx, tenant, v1, ct1, aad); !errors.Is(err, keys.ErrUnknownKeyVersion) {
		t.Fatalf("Rewrap from a retired version: %v, want ErrUnknownKeyVersion", err)
	}
	if _, _, err := tp.Rewrap(ctx, tenant, v2, ct2, []byte("other")); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("Rewrap with other aad: %v, want ErrAuth", err)
	}
	// Retire pins min_encryption_version to the then-current version; a
	// later rotation must still move Wrap to the new one.
	if v, err := a.Rotate(ctx, tenant); err != nil || v != 3 {
		t.Fatalf("Rotate after Retire: %d, %v; want 3", v, err)
	}
	if v, _, err := tp.Wrap(ctx, tenant, pt, aad); err != nil || v != 3 {
		t.Fatalf("Wrap after Retire and Rotate: version %d, %v; want 3", v, err)
	}
}

func TestWrongToken(t *testing.T) {
	p := provider(t, server, "hvs.not-a-token")
	err := p.Health(t.Context())
	if !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("Health with a wrong token: %v, want ErrPermissionDenied", err)
	}
	_, _, err = p.Wrap(t.Context(), "blue", []byte("k"), nil)
	if !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("Wrap with a wrong token: %v, want ErrPermissionDenied", err)
	}
	if !strings.Contains(err.Error(), server.Addr) {
		t.Fatalf("error %q does not name the Vault address", err)
	}
}

// TestServerStopped runs its own server, stops it mid-way and checks the
// error says Vault is unreachable.
func TestServerStopped(t *testing.T) {
	s := vaulttest.Start(t)
	ctx := t.Context()
	p := provider(t, s, s.RootToken)
	const tenant = "stopped"
	if err := p.CreateTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	v, ct, err := p.Wrap(ctx, tenant, []byte("dek"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"Unwrap", func() error { _, err := p.Unwrap(ctx, tenant, v, ct, nil); return err }},
		{"Wrap", func() error { _, _, err := p.Wrap(ctx, tenant, []byte("dek"), nil); return err }},
		{"Health", func() error { return p.Health(ctx) }},
		{"Rotate", func() error { _, err := p.Rotate(ctx, tenant); return err }},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, keys.ErrBackendUnavailable) {
				t.Fatalf("%s with Vault stopped: %v, want ErrBackendUnavailable", c.name, err)
			}
			for _, want := range []string{s.Addr, "is Vault running?"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("%s with Vault stopped: %q does not say %q", c.name, err, want)
				}
			}
		})
	}
}

func TestTenantPolicy(t *testing.T) {
	p := admin(t)
	hcl, err := p.TenantPolicy("blue")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"transit/encrypt/tencrypt-blue"`, `"transit/decrypt/tencrypt-blue"`, `"transit/keys/tencrypt-blue"`} {
		if !strings.Contains(hcl, want) {
			t.Fatalf("policy lacks %s:\n%s", want, hcl)
		}
	}
	for _, bad := range []string{"*", "create", "delete", "sudo", "rotate", "config", "trim"} {
		if strings.Contains(hcl, bad) {
			t.Fatalf("policy grants %q:\n%s", bad, hcl)
		}
	}
	if _, err := p.TenantPolicy("../x"); !errors.Is(err, keys.ErrInvalidTenant) {
		t.Fatalf("TenantPolicy(../x): %v, want ErrInvalidTenant", err)
	}
}

func TestTokenRedacted(t *testing.T) {
	a := admin(t)
	tenant := "redact-" + strings.ToLower(suffix())
	if err := a.CreateTenant(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}
	tok, err := a.GrantTenant(t.Context(), tenant, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Secret() == "" || tok.Accessor == "" {
		t.Fatalf("GrantTenant returned an empty token or accessor")
	}
	for _, s := range []string{tok.String(), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), tok.LogValue().String()} {
		if strings.Contains(s, tok.Secret()) {
			t.Fatalf("token printed with its secret: %s", s)
		}
	}
	if !strings.Contains(tok.String(), tok.Accessor) {
		t.Fatalf("token String() %q does not show the accessor", tok)
	}
}

// TestUpsertDisabled checks that after a shred an encrypt with an admin
// token cannot re-create the key: Vault's transit would otherwise create a
// missing key on encrypt.
func TestUpsertDisabled(t *testing.T) {
	ctx := t.Context()
	a := admin(t)
	tenant := "upsert-" + strings.ToLower(suffix())
	if _, _, err := a.Wrap(ctx, tenant, []byte("dek"), nil); !errors.Is(err, keys.ErrUnknownTenant) {
		t.Fatalf("Wrap for a tenant never created: %v, want ErrUnknownTenant", err)
	}
	if _, err := a.Tenant(ctx, tenant); !errors.Is(err, keys.ErrUnknownTenant) {
		t.Fatalf("Tenant after a Wrap for a tenant never created: %v; the Wrap must not create a key", err)
	}
}

func suffix() string {
	return rand.Text()[:10]
}

// rewrapCounter counts the provider's own rewraps, to show Envelope uses
// Vault's rewrap rather than unwrapping in this process.
type rewrapCounter struct {
	*vault.Provider
	rewraps, unwraps int
}

func (c *rewrapCounter) Rewrap(ctx context.Context, tenant string, v uint32, ct, aad []byte) (uint32, []byte, error) {
	c.rewraps++
	return c.Provider.Rewrap(ctx, tenant, v, ct, aad)
}

func (c *rewrapCounter) Unwrap(ctx context.Context, tenant string, v uint32, ct, aad []byte) ([]byte, error) {
	c.unwraps++
	return c.Provider.Unwrap(ctx, tenant, v, ct, aad)
}

type nopAudit struct{}

func (nopAudit) Record(context.Context, keys.AuditRecord) error { return nil }

func TestEnvelope(t *testing.T) {
	ctx := t.Context()
	a := admin(t)
	tenant := "env-" + strings.ToLower(suffix())
	if err := a.CreateTenant(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	p := &rewrapCounter{Provider: tenantProvider(t, tenant)}
	env := keys.NewEnvelope(p, nopAudit{}, time.Now)
	dek, wk, err := env.NewDEK(ctx, tenant, "file")
	if err != nil {
		t.Fatalf("NewDEK: %v", err)
	}
	if _, err := a.Rotate(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	wk2, err := env.Rewrap(ctx, wk, "file", "test")
	if err != nil {
		t.Fatalf("Envelope.Rewrap: %v", err)
	}
	if wk2.KEKVersion != 2 || p.rewraps != 1 || p.unwraps != 0 {
		t.Fatalf("Envelope.Rewrap: version %d, %d provider rewraps, %d unwraps; want 2, 1, 0", wk2.KEKVersion, p.rewraps, p.unwraps)
	}
	got, err := env.Unwrap(ctx, wk2, "file", "test")
	if err != nil {
		t.Fatalf("Envelope.Unwrap: %v", err)
	}
	if !got.Equal(&dek) {
		t.Fatal("the rewrapped DEK differs")
	}
	// The purpose is bound: the blob opens for nothing else.
	wk2.Purpose = "volume"
	if _, err := env.Unwrap(ctx, wk2, "volume", "test"); !errors.Is(err, keys.ErrAuth) {
		t.Fatalf("Unwrap of a blob edited to another purpose: %v, want ErrAuth", err)
	}
}
