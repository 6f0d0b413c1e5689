package keys

import (
	"context"
	"fmt"
)

// WrapDEK wraps a DEK the caller already holds (a KMS v2 plugin is handed
// the seed kube-apiserver drew) under tenant's current KEK for purpose, with
// the same binding as NewDEK, so Envelope.Unwrap opens it. The caller keeps
// ownership of dek and zeroes it.
func (e *Envelope) WrapDEK(ctx context.Context, tenant, purpose string, dek *DEK) (WrappedKey, error) {
	if err := ValidTenant(tenant); err != nil {
		return WrappedKey{}, fmt.Errorf("%q: %w", tenant, err)
	}
	if err := ValidPurpose(purpose); err != nil {
		return WrappedKey{}, err
	}
	name := e.p.Name()
	v, ct, err := e.p.Wrap(ctx, tenant, dek[:], bindingAD(name, tenant, purpose))
	if err != nil {
		return WrappedKey{}, fmt.Errorf("wrap a DEK for tenant %q: %w", tenant, err)
	}
	wk := WrappedKey{Provider: name, Tenant: tenant, Purpose: purpose, KEKVersion: v, Ciphertext: ct}
	if err := wk.Validate(); err != nil {
		return WrappedKey{}, fmt.Errorf("BUG: provider %s returned an unusable ciphertext: %w", name, err)
	}
	return wk, nil
}
