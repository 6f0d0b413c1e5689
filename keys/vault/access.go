package vault

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/keys"
)

// Token is a Vault token issued for one tenant. Its secret is shown only by
// Secret; String, GoString and LogValue give the accessor, which identifies
// the token (to revoke it) without granting anything.
type Token struct {
	// Accessor identifies the token: `vault token revoke -accessor ACCESSOR`.
	Accessor string
	// Policy is the one tencrypt policy the token holds.
	Policy string
	// TTL is the token's lifetime as Vault granted it.
	TTL    time.Duration
	secret string
}

// Secret returns the token itself, to hand to the tenant's workloads.
func (t Token) Secret() string { return t.secret }

// String redacts the secret.
func (t Token) String() string { return "vault-token(accessor=" + t.Accessor + ")" }

// GoString redacts the secret in %#v.
func (t Token) GoString() string { return t.String() }

// LogValue redacts the secret in slog records.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("accessor", t.Accessor), slog.String("policy", t.Policy))
}

// WriteFile writes the token to a new file at path, mode 0600, followed by a
// newline (the form Config.TokenFile reads), all or nothing
// (internal/atomicfile). It never replaces a file: an existing path is an
// error matching fs.ErrExist.
func (t Token) WriteFile(path string) error {
	b := make([]byte, 0, len(t.secret)+1)
	b = append(append(b, t.secret...), '\n')
	defer clear(b)
	return atomicfile.Write(path, b, atomicfile.Options{Perm: 0o600})
}

// policyPrefix starts the names of tenant policies: tencrypt-tenant-blue.
func (p *Provider) policyPrefix() string { return p.cfg.keyPrefix + "tenant-" }

// PolicyName is the name of the Vault policy for tenant's workloads.
func (p *Provider) PolicyName(tenant string) string { return p.policyPrefix() + tenant }

// TenantPolicy returns the HCL of the tenant's policy: encrypt, decrypt and
// rewrap with its own key, and reading that key's versions and its
// tombstone (so a shredded tenant is told so). Nothing else: not other
// tenants' keys, not rotate, trim, config or delete.
func (p *Provider) TenantPolicy(tenant string) (string, error) {
	if err := keys.ValidTenant(tenant); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# tencrypt: tenant %s may use only its own KEK.\n", tenant)
	rule := func(path, caps string) {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [%s]\n}\n", p.path(path), caps)
	}
	key := p.KeyName(tenant)
	// Only "update": encrypting with a missing key would be a "create".
	rule("encrypt/"+key, `"update"`)
	rule("decrypt/"+key, `"update"`)
	rule("rewrap/"+key, `"update"`)
	rule("keys/"+key, `"read"`)
	rule("keys/"+p.tombstoneName(tenant), `"read"`)
	return b.String(), nil
}

// GrantTenant makes sure the tenant's policy is in Vault and creates a
// token holding only it and Vault's default policy (which lets a token look
// itself up). The token comes from the token role Setup writes, so it is an
// orphan (revoking the admin's token leaves it alone) and the admin needs no
// tenant policy itself. ttl 0 takes the token store's default.
//
// Writing a policy is an operator's act: whoever may write policies may
// write one that grants anything, and a token role hands out any policy
// whose name matches. So the admin policy only reads tenant policies; an
// admin token issues tokens for tenants whose policy an operator wrote
// (GrantTenant with an operator token writes it, once), and gets
// ErrPermissionDenied with what to do for the others.
func (p *Provider) GrantTenant(ctx context.Context, tenant string, ttl time.Duration) (Token, error) {
	hcl, err := p.TenantPolicy(tenant)
	if err != nil {
		return Token{}, err
	}
	if err := ctxErr(ctx); err != nil {
		return Token{}, err
	}
	name := p.PolicyName(tenant)
	current, err := p.client.Sys().GetPolicyWithContext(ctx, name)
	if err != nil && !isStatus(err, http.StatusNotFound) {
		return Token{}, p.opErr("read the policy of", tenant, err)
	}
	if current != hcl {
		if err := p.client.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
			if isStatus(err, http.StatusForbidden) {
				return Token{}, fmt.Errorf("%w: Vault at %s has no (current) policy %s for tenant %s, and only an operator may write policies: run `tencrypt keys vault grant %s` once with an operator token",
					keys.ErrPermissionDenied, p.cfg.addr, name, tenant, tenant)
			}
			return Token{}, p.opErr("write the policy of", tenant, err)
		}
	}
	req := &api.TokenCreateRequest{
		Policies:    []string{name},
		DisplayName: p.cfg.keyPrefix + tenant,
		Metadata:    map[string]string{"tencrypt-tenant": tenant},
	}
	if ttl > 0 {
		req.TTL = ttl.String()
	}
	s, err := p.client.Auth().Token().CreateWithRoleWithContext(ctx, req, p.TokenRole())
	if err != nil {
		if isStatus(err, http.StatusBadRequest) && responseHas(err, "unknown role") {
			return Token{}, fmt.Errorf("vault: no token role %s on Vault at %s: run `tencrypt keys vault setup` with an operator token first", p.TokenRole(), p.cfg.addr)
		}
		return Token{}, p.opErr("create a token for", tenant, err)
	}
	if s == nil || s.Auth == nil || s.Auth.ClientToken == "" {
		return Token{}, fmt.Errorf("%w: Vault at %s created no token for tenant %s", keys.ErrBackendUnavailable, p.cfg.addr, tenant)
	}
	return Token{
		Accessor: s.Auth.Accessor,
		Policy:   name,
		TTL:      time.Duration(s.Auth.LeaseDuration) * time.Second,
		secret:   s.Auth.ClientToken,
	}, nil
}

// TokenRole is the token role tenant tokens are created with.
func (p *Provider) TokenRole() string { return p.cfg.keyPrefix + "tenant" }

// AdminPolicy returns the HCL of a policy that lets a token run every
// KEKProvider operation, for tencrypt's keys only, and issue tokens for
// tenants whose policy an operator wrote (GrantTenant): a narrower admin
// than Vault's root token. It may read tenant policies but not write them,
// since a policy writer could grant itself anything through the token role.
// Setup and writing tenant policies need an operator token.
func (p *Provider) AdminPolicy() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# tencrypt admin: manage the KEKs on %s and issue tenant tokens.\n", p.cfg.mount)
	rule := func(path, caps string) {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [%s]\n}\n", path, caps)
	}
	keysGlob := p.cfg.keyPrefix + "*"
	// create and update cover create, config, rotate and trim; delete is
	// shred; no "create" on encrypt, which would re-create a deleted key.
	rule(p.path("keys", keysGlob), `"create", "read", "update", "delete"`)
	rule(p.path("keys"), `"list"`)
	rule(p.path("encrypt", keysGlob), `"update"`)
	rule(p.path("decrypt", keysGlob), `"update"`)
	rule(p.path("rewrap", keysGlob), `"update"`)
	rule(p.path("config", "keys"), `"read", "update"`)
	rule("sys/policies/acl/"+p.policyPrefix()+"*", `"read"`)
	rule("auth/token/create/"+p.TokenRole(), `"update"`)
	return b.String()
}

// Setup prepares Vault for tencrypt, idempotently: it enables the transit
// engine at the configured mount if it is missing, turns off key upsert on
// it, and writes the token role GrantTenant uses (orphan tokens, allowed
// only policies named <prefix>tenant-*). It needs an operator token (mounts
// and token roles); `tencrypt keys vault setup` runs it.
func (p *Provider) Setup(ctx context.Context) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	m, err := p.client.Sys().GetMountWithContext(ctx, p.cfg.mount)
	switch {
	case err == nil && m.Type != "transit":
		return fmt.Errorf("%w: mount %s on Vault at %s is a %q engine, not transit: pick another vault.mount", ErrConfig, p.cfg.mount, p.cfg.addr, m.Type)
	case err != nil && !isStatus(err, http.StatusBadRequest) && !isStatus(err, http.StatusNotFound):
		return p.opErr("read the mount", "", err)
	case err != nil:
		if err := p.client.Sys().MountWithContext(ctx, p.cfg.mount, &api.MountInput{
			Type:        "transit",
			Description: "tencrypt tenant KEKs",
		}); err != nil {
			return p.opErr("enable transit at", "", err)
		}
	}
	p.noUpsert.Store(false)
	if err := p.disableUpsert(ctx); err != nil {
		return err
	}
	if _, err := p.client.Logical().WriteWithContext(ctx, "auth/token/roles/"+p.TokenRole(), map[string]any{
		"allowed_policies_glob": []string{p.policyPrefix() + "*"},
		"orphan":                true,
		"renewable":             true,
		"token_type":            "service",
	}); err != nil {
		return p.opErr("write the token role "+p.TokenRole()+" on", "", err)
	}
	return nil
}
