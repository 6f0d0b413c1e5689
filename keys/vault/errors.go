package vault

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/tencrypt/tencrypt/keys"
)

var osGetenv = os.Getenv

// Vault's transit answers (HTTP 400) that mean a key version is missing or
// retired; anything else wrong with a decrypt or rewrap is an authentication
// failure.
var versionErrors = []string{
	"version is disallowed by policy (too old)",
	"invalid ciphertext: version is too new",
	"invalid key version",
	"no such key version",
}

// Vault's transit answer (HTTP 400) when the named key does not exist.
const keyNotFound = "encryption key not found"

func isStatus(err error, code int) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == code
}

func responseHas(err error, texts ...string) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	for _, e := range re.Errors {
		for _, t := range texts {
			if strings.Contains(e, t) {
				return true
			}
		}
	}
	return false
}

func isShredded(err error) bool { return errors.Is(err, keys.ErrShredded) }

func (p *Provider) authErr(tenant string) error {
	return fmt.Errorf("vault: tenant %s: %w", tenant, keys.ErrAuth)
}

func (p *Provider) versionErr(tenant string, version uint32) error {
	return fmt.Errorf("%w: tenant %s has no KEK version %d in Vault (retired, or never created)", keys.ErrUnknownKeyVersion, tenant, version)
}

// checkCall validates the tenant name, then the context.
func checkCall(ctx context.Context, tenant string) error {
	if err := keys.ValidTenant(tenant); err != nil {
		return err
	}
	return ctxErr(ctx)
}

// ctxErr reports a context that is already done before any request is sent.
func ctxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: vault: %w", keys.ErrBackendUnavailable, err)
	}
	return nil
}

func (p *Provider) shreddedErr(tenant string) error {
	return fmt.Errorf("vault: tenant %s: %w", tenant, keys.ErrShredded)
}

// opErr maps an error from Vault that needs no knowledge of the operation:
// cancellation and unreachable servers, refused permissions, server errors.
// Anything else is reported as it is, with what we were doing.
func (p *Provider) opErr(what, tenant string, err error) error {
	target := p.cfg.mount
	if tenant != "" {
		target = "tenant " + tenant
	}
	var re *api.ResponseError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: vault: %s %s: no answer from %s in time: %w", keys.ErrBackendUnavailable, what, target, p.cfg.addr, err)
	case !errors.As(err, &re):
		// No HTTP answer at all: refused, reset, DNS, TLS.
		return fmt.Errorf("%w: vault: cannot reach Vault at %s to %s %s (is Vault running? is the address right?): %w", keys.ErrBackendUnavailable, p.cfg.addr, what, target, err)
	case re.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: vault at %s refused to %s %s: the token is invalid or expired, or its policies do not allow this (%s)", keys.ErrPermissionDenied, p.cfg.addr, what, target, strings.Join(re.Errors, "; "))
	case re.StatusCode == http.StatusServiceUnavailable:
		return fmt.Errorf("%w: vault at %s is sealed or in standby, could not %s %s: unseal it or use the active node", keys.ErrBackendUnavailable, p.cfg.addr, what, target)
	case re.StatusCode >= 500 || re.StatusCode == http.StatusTooManyRequests:
		return fmt.Errorf("%w: vault at %s failed to %s %s (HTTP %d: %s); retry later", keys.ErrBackendUnavailable, p.cfg.addr, what, target, re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return fmt.Errorf("vault: could not %s %s (HTTP %d: %s)", what, target, re.StatusCode, strings.Join(re.Errors, "; "))
}

// missingOr maps an error where a 400 "key not found" means the tenant has
// no key (unknown or shredded).
func (p *Provider) missingOr(ctx context.Context, tenant, what string, err error) error {
	if isStatus(err, http.StatusBadRequest) && responseHas(err, keyNotFound, "key not found", "no existing key", "invalid key name") {
		return p.classifyMissing(ctx, tenant)
	}
	return p.opErr(what, tenant, err)
}

// forbiddenOr handles a 403 on encrypt: Vault checks "create" rights when the
// key is missing, so a tenant's token is refused for a shredded key. Reading
// the key (which the tenant's policy allows) tells the two apart.
func (p *Provider) forbiddenOr(ctx context.Context, tenant, what string, err error) error {
	s, rerr := p.client.Logical().ReadWithContext(ctx, p.path("keys", p.KeyName(tenant)))
	if rerr == nil && s == nil {
		return p.classifyMissing(ctx, tenant)
	}
	return p.opErr(what, tenant, err)
}

// classifyMissing explains a tenant key that is not there: shredded (its
// tombstone exists) or never created.
func (p *Provider) classifyMissing(ctx context.Context, tenant string) error {
	shredded, err := p.hasTombstone(ctx, tenant)
	if err != nil {
		return err
	}
	if shredded {
		return p.shreddedErr(tenant)
	}
	return fmt.Errorf("%w: %s has no key in Vault at %s (transit key %s): create it with `tencrypt keys create %s --backend vault`",
		keys.ErrUnknownTenant, tenant, p.cfg.addr, p.path("keys", p.KeyName(tenant)), tenant)
}

// cipherOpErr maps errors of decrypt and rewrap.
func (p *Provider) cipherOpErr(ctx context.Context, tenant string, version uint32, what string, err error) error {
	if !isStatus(err, http.StatusBadRequest) {
		return p.opErr(what, tenant, err)
	}
	switch {
	case responseHas(err, keyNotFound):
		return p.classifyMissing(ctx, tenant)
	case responseHas(err, versionErrors...):
		return p.versionErr(tenant, version)
	}
	// Vault says "cipher: message authentication failed" or names what it
	// could not parse; either way the same answer.
	return p.authErr(tenant)
}
