// Package vault is a keys.KEKProvider over HashiCorp Vault's transit secrets
// engine. Each tenant has one transit key, <prefix><tenant>
// (tencrypt-<tenant> by default), of type aes256-gcm96; wrapping and
// unwrapping happen inside Vault, and KEK versions are the transit key's
// versions.
//
// Associated data is bound through key derivation: the keys are created with
// derived=true and every request passes context = "tencrypt-aad-v1:" ‖ aad,
// so Vault derives a per-aad key from the KEK version and a ciphertext opens
// only with the same aad. Transit's own associated_data parameter is not
// used because its rewrap endpoint ignores it (Vault 1.21), which would make
// rewrap impossible; context is honoured by encrypt, decrypt and rewrap.
//
// A shredded tenant leaves a tombstone: an unused transit key named
// <prefix><tenant>.shredded (a name no tenant can have, since tenants have no
// dots). Shred writes it before deleting the tenant's key, and CreateTenant
// refuses a name with a tombstone. Admin operations also turn off transit's
// key upsert on the mount (config/keys disable_upsert), so an encrypt for a
// deleted key fails instead of silently creating a fresh one.
//
// Tenant isolation is Vault's: GrantTenant writes a policy allowing only
// encrypt, decrypt, rewrap and reading of that tenant's key, and creates a
// token holding just that policy.
package vault

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/vault/api"

	"github.com/tencrypt/tencrypt/keys"
)

// Name is the backend name recorded in wrapped keys.
const Name = "vault"

const (
	keyType         = "aes256-gcm96"
	tombstoneSuffix = ".shredded"
	// contextPrefix makes the derivation context non-empty (Vault requires
	// one) and names what it binds; see docs/VAULT.md.
	contextPrefix = "tencrypt-aad-v1:"
)

// Provider is a keys.KEKProvider backed by Vault transit. It is safe for
// concurrent use.
type Provider struct {
	cfg    resolved
	client *api.Client
	hc     *http.Client
	// noUpsert is set once this provider has turned off key upsert on the
	// mount; admin operations do it first.
	noUpsert atomic.Bool
}

var (
	_ keys.KEKProvider = (*Provider)(nil)
	_ keys.Rewrapper   = (*Provider)(nil)
)

// Open returns a provider for cfg; it is New with the signature
// keys/backend expects. It does not contact Vault.
func Open(_ context.Context, cfg Config) (keys.KEKProvider, error) {
	p, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// New returns a provider for cfg. It does not contact Vault; Health does.
// Empty fields of cfg come from VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT.
func New(cfg Config) (*Provider, error) {
	return newProvider(cfg, osGetenv)
}

func newProvider(cfg Config, getenv func(string) string) (*Provider, error) {
	r, err := cfg.resolve(getenv)
	if err != nil {
		return nil, err
	}
	// Built by hand rather than from api.DefaultConfig, which reads
	// VAULT_SKIP_VERIFY and friends from the environment.
	hc := cleanhttp.DefaultPooledClient()
	tr := hc.Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ac := &api.Config{
		Address:      r.addr,
		HttpClient:   hc,
		Timeout:      r.timeout,
		MaxRetries:   2,
		MinRetryWait: 500 * time.Millisecond,
		MaxRetryWait: 1500 * time.Millisecond,
	}
	if r.caCert != "" || r.tlsSkipVerify {
		if err := ac.ConfigureTLS(&api.TLSConfig{CACert: r.caCert, Insecure: r.tlsSkipVerify}); err != nil {
			return nil, fmt.Errorf("%w: TLS for %s: %w", ErrConfig, r.addr, err)
		}
	}
	c, err := api.NewClient(ac)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c.SetToken(r.token)
	c.ClearNamespace() // Community Edition has none; ignore VAULT_NAMESPACE.
	return &Provider{cfg: r, client: c, hc: hc}, nil
}

// Name returns "vault".
func (p *Provider) Name() string { return Name }

// Addr is the Vault address the provider talks to.
func (p *Provider) Addr() string { return p.cfg.addr }

// Mount is the path of the transit engine.
func (p *Provider) Mount() string { return p.cfg.mount }

// KeyName is the transit key holding tenant's KEK versions.
func (p *Provider) KeyName(tenant string) string { return p.cfg.keyPrefix + tenant }

func (p *Provider) tombstoneName(tenant string) string {
	return p.cfg.keyPrefix + tenant + tombstoneSuffix
}

func (p *Provider) path(parts ...string) string {
	return p.cfg.mount + "/" + strings.Join(parts, "/")
}

// derivationContext encodes aad as the transit context parameter.
func derivationContext(aad []byte) string {
	b := make([]byte, 0, len(contextPrefix)+len(aad))
	b = append(b, contextPrefix...)
	b = append(b, aad...)
	return base64.StdEncoding.EncodeToString(b)
}

// CreateTenant creates the tenant's transit key (version 1).
func (p *Provider) CreateTenant(ctx context.Context, tenant string) error {
	if err := checkCall(ctx, tenant); err != nil {
		return err
	}
	if err := p.disableUpsert(ctx); err != nil {
		return err
	}
	if shredded, err := p.hasTombstone(ctx, tenant); err != nil {
		return err
	} else if shredded {
		return p.shreddedErr(tenant)
	}
	key := p.path("keys", p.KeyName(tenant))
	// Transit's create is an upsert that does not say whether the key was
	// there, so look first. Two racing creators both succeed, on one key.
	if s, err := p.client.Logical().ReadWithContext(ctx, key); err != nil {
		return p.opErr("read the key of", tenant, err)
	} else if s != nil {
		return fmt.Errorf("%w: %s (Vault transit key %s)", keys.ErrTenantExists, tenant, key)
	}
	if _, err := p.client.Logical().WriteWithContext(ctx, key, map[string]any{
		"type":    keyType,
		"derived": true,
	}); err != nil {
		return p.opErr("create the key of", tenant, err)
	}
	return nil
}

// Rotate adds a key version and returns it.
func (p *Provider) Rotate(ctx context.Context, tenant string) (uint32, error) {
	if err := checkCall(ctx, tenant); err != nil {
		return 0, err
	}
	if err := p.disableUpsert(ctx); err != nil {
		return 0, err
	}
	s, err := p.client.Logical().WriteWithContext(ctx, p.path("keys", p.KeyName(tenant), "rotate"), nil)
	if err != nil {
		return 0, p.missingOr(ctx, tenant, "rotate the key of", err)
	}
	if s != nil {
		if v, ok := uintField(s.Data, "latest_version"); ok && v > 0 {
			return v, nil
		}
	}
	info, err := p.Tenant(ctx, tenant)
	if err != nil {
		return 0, err
	}
	return info.Current, nil
}

// Tenant reads the tenant's key versions. A shredded tenant is reported with
// Shredded set and no error.
func (p *Provider) Tenant(ctx context.Context, tenant string) (keys.TenantInfo, error) {
	if err := checkCall(ctx, tenant); err != nil {
		return keys.TenantInfo{}, err
	}
	s, err := p.client.Logical().ReadWithContext(ctx, p.path("keys", p.KeyName(tenant)))
	if err != nil {
		return keys.TenantInfo{}, p.opErr("read the key of", tenant, err)
	}
	if s == nil || s.Data == nil {
		err := p.classifyMissing(ctx, tenant)
		if isShredded(err) {
			return keys.TenantInfo{Tenant: tenant, Shredded: true}, nil
		}
		return keys.TenantInfo{}, err
	}
	return tenantInfo(tenant, s.Data)
}

func tenantInfo(tenant string, d map[string]any) (keys.TenantInfo, error) {
	info := keys.TenantInfo{Tenant: tenant}
	latest, ok1 := uintField(d, "latest_version")
	minDec, ok2 := uintField(d, "min_decryption_version")
	if !ok1 || !ok2 || latest == 0 {
		return info, fmt.Errorf("%w: Vault's answer for tenant %s lacks latest_version or min_decryption_version", keys.ErrBackendUnavailable, tenant)
	}
	info.Current = latest
	info.MinVersion = max(minDec, 1)
	if minAvail, ok := uintField(d, "min_available_version"); ok && minAvail > info.MinVersion {
		info.MinVersion = minAvail
	}
	// keys maps each live version to its creation time (Unix seconds for
	// symmetric keys); the oldest one tells when the tenant was created,
	// exactly so while version 1 is live.
	if m, ok := d["keys"].(map[string]any); ok {
		var first uint64
		for k, v := range m {
			n, err := strconv.ParseUint(k, 10, 32)
			if err != nil {
				continue
			}
			if sec, ok := toUint(v); ok && (first == 0 || n < first) {
				first = n
				info.Created = time.Unix(int64(sec), 0).UTC()
			}
		}
	}
	return info, nil
}

// Tenants lists the tenants with a key or a tombstone on the mount. With a
// token that may not list keys (a tenant's token), it lists the tenants
// whose policies the token holds.
func (p *Provider) Tenants(ctx context.Context) ([]keys.TenantInfo, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	s, err := p.client.Logical().ListWithContext(ctx, p.path("keys"))
	if err != nil {
		if isStatus(err, http.StatusForbidden) {
			return p.tenantsFromPolicies(ctx)
		}
		return nil, p.opErr("list the keys on", "", err)
	}
	var names []string
	if s != nil {
		if ks, ok := s.Data["keys"].([]any); ok {
			for _, k := range ks {
				if n, ok := k.(string); ok {
					names = append(names, n)
				}
			}
		}
	}
	live := map[string]bool{}
	shredded := map[string]bool{}
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, p.cfg.keyPrefix)
		if !ok {
			continue
		}
		if t, ok := strings.CutSuffix(rest, tombstoneSuffix); ok && keys.ValidTenant(t) == nil {
			shredded[t] = true
		} else if keys.ValidTenant(rest) == nil {
			live[rest] = true
		}
	}
	var out []keys.TenantInfo
	for t := range live {
		info, err := p.Tenant(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	for t := range shredded {
		if !live[t] { // mid-shred: the key is still there, report it as live
			out = append(out, keys.TenantInfo{Tenant: t, Shredded: true})
		}
	}
	slices.SortFunc(out, func(a, b keys.TenantInfo) int { return strings.Compare(a.Tenant, b.Tenant) })
	return out, nil
}

func (p *Provider) tenantsFromPolicies(ctx context.Context) ([]keys.TenantInfo, error) {
	s, err := p.client.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		return nil, p.opErr("look up the token for", "", err)
	}
	pols, err := s.TokenPolicies()
	if err != nil {
		return nil, fmt.Errorf("%w: reading the token's policies: %w", keys.ErrBackendUnavailable, err)
	}
	var out []keys.TenantInfo
	for _, pol := range pols {
		t, ok := strings.CutPrefix(pol, p.policyPrefix())
		if !ok || keys.ValidTenant(t) != nil {
			continue
		}
		info, err := p.Tenant(ctx, t)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b keys.TenantInfo) int { return strings.Compare(a.Tenant, b.Tenant) })
	return out, nil
}

// Retire makes versions below minVersion unusable (min_decryption_version)
// and then deletes them from Vault's storage (trim).
func (p *Provider) Retire(ctx context.Context, tenant string, minVersion uint32) error {
	info, err := p.Tenant(ctx, tenant)
	if err != nil {
		return err
	}
	if info.Shredded {
		return p.shreddedErr(tenant)
	}
	if minVersion == 0 || minVersion > info.Current {
		return fmt.Errorf("%w: cannot retire below version %d of tenant %s: its versions are 1 to %d", keys.ErrUnknownKeyVersion, minVersion, tenant, info.Current)
	}
	key := p.path("keys", p.KeyName(tenant))
	// Written even when nothing is left to retire, so that credentials
	// without the right to retire are refused the same way every time.
	// Trim needs min_encryption_version set; pinning it to the current
	// version changes nothing for Wrap: transit encrypts with the newest
	// version unless a request names one, also after a later Rotate.
	if _, err := p.client.Logical().WriteWithContext(ctx, key+"/config", map[string]any{
		"min_decryption_version": max(minVersion, info.MinVersion),
		"min_encryption_version": info.Current,
	}); err != nil {
		return p.missingOr(ctx, tenant, "retire old versions of", err)
	}
	if minVersion <= info.MinVersion {
		return nil // already retired and trimmed
	}
	if _, err := p.client.Logical().WriteWithContext(ctx, key+"/trim", map[string]any{
		"min_available_version": minVersion,
	}); err != nil {
		return p.missingOr(ctx, tenant, "trim old versions of", err)
	}
	return nil
}

// Shred writes the tenant's tombstone, then allows deletion of its key and
// deletes it, with every version.
func (p *Provider) Shred(ctx context.Context, tenant string) error {
	if err := checkCall(ctx, tenant); err != nil {
		return err
	}
	if err := p.disableUpsert(ctx); err != nil {
		return err
	}
	key := p.path("keys", p.KeyName(tenant))
	s, err := p.client.Logical().ReadWithContext(ctx, key)
	if err != nil {
		return p.opErr("read the key of", tenant, err)
	}
	if s == nil {
		return p.classifyMissing(ctx, tenant)
	}
	// The tombstone first: if we stop half-way, the tenant is marked and a
	// second Shred finishes the job.
	if _, err := p.client.Logical().WriteWithContext(ctx, p.path("keys", p.tombstoneName(tenant)), map[string]any{
		"type": keyType,
	}); err != nil {
		return p.opErr("write the tombstone of", tenant, err)
	}
	if _, err := p.client.Logical().WriteWithContext(ctx, key+"/config", map[string]any{"deletion_allowed": true}); err != nil {
		return p.opErr("allow deletion of the key of", tenant, err)
	}
	if _, err := p.client.Logical().DeleteWithContext(ctx, key); err != nil {
		return p.opErr("delete the key of", tenant, err)
	}
	return nil
}

// Wrap encrypts plaintext under the tenant's newest key version.
func (p *Provider) Wrap(ctx context.Context, tenant string, plaintext, aad []byte) (uint32, []byte, error) {
	if err := checkCall(ctx, tenant); err != nil {
		return 0, nil, err
	}
	if len(plaintext) > keys.MaxWrapSize {
		return 0, nil, fmt.Errorf("vault: cannot wrap %d bytes: at most %d", len(plaintext), keys.MaxWrapSize)
	}
	s, err := p.client.Logical().WriteWithContext(ctx, p.path("encrypt", p.KeyName(tenant)), map[string]any{
		"plaintext": base64.StdEncoding.EncodeToString(plaintext),
		"context":   derivationContext(aad),
	})
	if err != nil {
		// Encrypting with a missing key is a "create" in Vault's eyes, which
		// a tenant's policy does not allow: a 403 may mean the key is gone.
		if isStatus(err, http.StatusForbidden) {
			return 0, nil, p.forbiddenOr(ctx, tenant, "wrap a key for", err)
		}
		return 0, nil, p.missingOr(ctx, tenant, "wrap a key for", err)
	}
	return p.ciphertextResult(tenant, s)
}

// Unwrap decrypts a ciphertext made by Wrap (or Rewrap).
func (p *Provider) Unwrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) ([]byte, error) {
	if err := checkCall(ctx, tenant); err != nil {
		return nil, err
	}
	if err := p.checkVersion(ctx, tenant, version, ciphertext); err != nil {
		return nil, err
	}
	s, err := p.client.Logical().WriteWithContext(ctx, p.path("decrypt", p.KeyName(tenant)), map[string]any{
		"ciphertext": string(ciphertext),
		"context":    derivationContext(aad),
	})
	if err != nil {
		return nil, p.cipherOpErr(ctx, tenant, version, "unwrap a key of", err)
	}
	pt, _ := stringField(s, "plaintext")
	out, err := base64.StdEncoding.DecodeString(pt)
	if err != nil || s == nil {
		return nil, fmt.Errorf("%w: Vault answered decrypt for tenant %s without a plaintext", keys.ErrBackendUnavailable, tenant)
	}
	return out, nil
}

// Rewrap moves a ciphertext to the tenant's newest key version inside Vault.
func (p *Provider) Rewrap(ctx context.Context, tenant string, version uint32, ciphertext, aad []byte) (uint32, []byte, error) {
	if err := checkCall(ctx, tenant); err != nil {
		return 0, nil, err
	}
	if err := p.checkVersion(ctx, tenant, version, ciphertext); err != nil {
		return 0, nil, err
	}
	s, err := p.client.Logical().WriteWithContext(ctx, p.path("rewrap", p.KeyName(tenant)), map[string]any{
		"ciphertext": string(ciphertext),
		"context":    derivationContext(aad),
	})
	if err != nil {
		return 0, nil, p.cipherOpErr(ctx, tenant, version, "rewrap a key of", err)
	}
	return p.ciphertextResult(tenant, s)
}

// checkVersion checks that ct is a transit ciphertext naming version. When
// it names another one, the answer is ErrUnknownKeyVersion if the tenant has
// no such version and ErrAuth otherwise: the wrapped key was presented under
// the wrong version or its prefix was altered.
func (p *Provider) checkVersion(ctx context.Context, tenant string, version uint32, ct []byte) error {
	if version == 0 {
		return fmt.Errorf("%w: version 0 of tenant %s: versions start at 1", keys.ErrUnknownKeyVersion, tenant)
	}
	v, ok := parseCiphertext(ct)
	if !ok {
		return p.authErr(tenant)
	}
	if v == version {
		return nil
	}
	info, err := p.Tenant(ctx, tenant)
	if err != nil {
		return err
	}
	if info.Shredded {
		return p.shreddedErr(tenant)
	}
	if version < info.MinVersion || version > info.Current {
		return p.versionErr(tenant, version)
	}
	return p.authErr(tenant)
}

func (p *Provider) ciphertextResult(tenant string, s *api.Secret) (uint32, []byte, error) {
	ct, _ := stringField(s, "ciphertext")
	v, ok := parseCiphertext([]byte(ct))
	if !ok {
		return 0, nil, fmt.Errorf("%w: Vault answered for tenant %s without a transit ciphertext", keys.ErrBackendUnavailable, tenant)
	}
	if kv, ok := uintField(s.Data, "key_version"); ok && kv != v {
		return 0, nil, fmt.Errorf("%w: Vault's ciphertext for tenant %s names version %d but key_version is %d", keys.ErrBackendUnavailable, tenant, v, kv)
	}
	return v, []byte(ct), nil
}

// Health checks that Vault is up and unsealed and that the token is valid.
func (p *Provider) Health(ctx context.Context) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	h, err := p.client.Sys().HealthWithContext(ctx)
	if err != nil {
		return p.opErr("check the health of", "", err)
	}
	if !h.Initialized || h.Sealed {
		return fmt.Errorf("%w: Vault at %s is sealed or not initialized: unseal it", keys.ErrBackendUnavailable, p.cfg.addr)
	}
	if _, err := p.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return p.opErr("look up the token for", "", err)
	}
	return nil
}

// Close drops idle connections. The provider must not be used after.
func (p *Provider) Close() error {
	p.hc.CloseIdleConnections()
	return nil
}

// disableUpsert turns off transit's create-on-encrypt for the mount, once
// per provider, so an encrypt can never re-create a shredded tenant's key.
func (p *Provider) disableUpsert(ctx context.Context) error {
	if p.noUpsert.Load() {
		return nil
	}
	if _, err := p.client.Logical().WriteWithContext(ctx, p.path("config", "keys"), map[string]any{"disable_upsert": true}); err != nil {
		return p.opErr("turn off key upsert on", "", err)
	}
	p.noUpsert.Store(true)
	return nil
}

func (p *Provider) hasTombstone(ctx context.Context, tenant string) (bool, error) {
	s, err := p.client.Logical().ReadWithContext(ctx, p.path("keys", p.tombstoneName(tenant)))
	if err != nil {
		return false, p.opErr("look for the tombstone of", tenant, err)
	}
	return s != nil, nil
}

func uintField(d map[string]any, name string) (uint32, bool) {
	v, ok := d[name]
	if !ok {
		return 0, false
	}
	n, ok := toUint(v)
	if !ok || n > 1<<32-1 {
		return 0, false
	}
	return uint32(n), true
}

func toUint(v any) (uint64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseUint(x.String(), 10, 64)
		return n, err == nil
	case float64:
		if x < 0 || x != float64(uint64(x)) {
			return 0, false
		}
		return uint64(x), true
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

func stringField(s *api.Secret, name string) (string, bool) {
	if s == nil {
		return "", false
	}
	v, ok := s.Data[name].(string)
	return v, ok
}
