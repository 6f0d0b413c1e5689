package vault

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"

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

// GrantTenant writes the tenant's policy (replacing an older one) and
// creates a token holding only it and Vault's default policy (which lets a
// token look itself up). ttl 0 takes the token store's default. It needs a
// token that may write policies and create tokens.
func (p *Provider) GrantTenant(ctx context.Context, tenant string, ttl time.Duration) (Token, error) {
	hcl, err := p.TenantPolicy(tenant)
	if err != nil {
		return Token{}, err
	}
	name := p.PolicyName(tenant)
	if err := p.client.Sys().PutPolicyWithContext(ctx, name, hcl); err != nil {
		return Token{}, p.opErr("write the policy of", tenant, err)
	}
	req := &api.TokenCreateRequest{
		Policies:    []string{name},
		DisplayName: "tencrypt-" + tenant,
		Metadata:    map[string]string{"tencrypt-tenant": tenant},
	}
	if ttl > 0 {
		req.TTL = ttl.String()
	}
	s, err := p.client.Auth().Token().CreateWithContext(ctx, req)
	if err != nil {
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
