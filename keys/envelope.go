package keys

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Envelope is envelope encryption over a KEKProvider: it makes DEKs, wraps
// them for a tenant and a purpose, and unwraps them with an audit record
// for every unwrap. It is safe for concurrent use if the provider and the
// audit sink are.
type Envelope struct {
	p     KEKProvider
	audit AuditSink
	now   func() time.Time
}

// NewEnvelope returns an Envelope over p that records every unwrap and
// rewrap in audit, timestamped by now.
func NewEnvelope(p KEKProvider, audit AuditSink, now func() time.Time) *Envelope {
	if p == nil || audit == nil || now == nil {
		panic("BUG: keys.NewEnvelope needs a provider, an audit sink and a clock")
	}
	return &Envelope{p: p, audit: audit, now: now}
}

// Provider returns the provider the envelope wraps with.
func (e *Envelope) Provider() KEKProvider { return e.p }

// NewDEK makes a fresh random DEK and wraps it under tenant's current KEK
// for purpose. The caller zeroes the DEK (defer dek.Zero()).
func (e *Envelope) NewDEK(ctx context.Context, tenant, purpose string) (DEK, WrappedKey, error) {
	if err := ValidTenant(tenant); err != nil {
		return DEK{}, WrappedKey{}, fmt.Errorf("%q: %w", tenant, err)
	}
	if err := ValidPurpose(purpose); err != nil {
		return DEK{}, WrappedKey{}, err
	}
	dek := newDEK()
	name := e.p.Name()
	v, ct, err := e.p.Wrap(ctx, tenant, dek[:], bindingAD(name, tenant, purpose))
	if err != nil {
		dek.Zero()
		return DEK{}, WrappedKey{}, fmt.Errorf("wrap a new DEK for tenant %q: %w", tenant, err)
	}
	wk := WrappedKey{Provider: name, Tenant: tenant, Purpose: purpose, KEKVersion: v, Ciphertext: ct}
	if err := wk.Validate(); err != nil {
		dek.Zero()
		return DEK{}, WrappedKey{}, fmt.Errorf("BUG: provider %s returned an unusable ciphertext: %w", name, err)
	}
	return dek, wk, nil
}

// check verifies a wrapped key is well formed and was made by this
// envelope's provider for purpose.
func (e *Envelope) check(wk *WrappedKey, purpose string) error {
	if err := wk.Validate(); err != nil {
		return err
	}
	if wk.Provider != e.p.Name() {
		return fmt.Errorf("%w: %v was made by the %q backend; open it with --backend %s", ErrMismatch, wk, wk.Provider, wk.Provider)
	}
	if wk.Purpose != purpose {
		return fmt.Errorf("%w: %v is for purpose %q, not %q", ErrMismatch, wk, wk.Purpose, purpose)
	}
	return nil
}

// record writes an audit record for an operation that ended with err, and
// returns the error the caller must return: err, or ErrAudit (joined with
// err) when the record could not be written.
func (e *Envelope) record(ctx context.Context, r AuditRecord, err error) error {
	r.Time = e.now().UTC()
	r.Provider = e.p.Name()
	r.Outcome = "ok"
	if err != nil {
		r.Outcome, r.Error = "error", ErrorClass(err)
	}
	if aerr := e.audit.Record(ctx, r); aerr != nil {
		return errors.Join(fmt.Errorf("%w: %w", ErrAudit, aerr), err)
	}
	return err
}

// Unwrap returns the DEK in wk after checking that wk was made by this
// provider for purpose. The provider authenticates tenant, provider and
// purpose with the ciphertext, so a blob edited to name another tenant or
// purpose fails with ErrAuth. Every call, successful or not, is recorded in
// the audit sink before Unwrap returns; if the record cannot be written the
// DEK is zeroed and the error wraps ErrAudit (fail closed). caller names who
// asked, for the audit log.
func (e *Envelope) Unwrap(ctx context.Context, wk WrappedKey, purpose, caller string) (DEK, error) {
	rec := AuditRecord{Op: "unwrap", Tenant: wk.Tenant, KeyVersion: wk.KEKVersion, Purpose: purpose, Caller: caller}
	if err := e.check(&wk, purpose); err != nil {
		return DEK{}, e.record(ctx, rec, err)
	}
	pt, err := e.p.Unwrap(ctx, wk.Tenant, wk.KEKVersion, wk.Ciphertext, bindingAD(wk.Provider, wk.Tenant, wk.Purpose))
	var dek DEK
	if err == nil && len(pt) != DEKSize {
		err = fmt.Errorf("%w: the wrapped secret is %d bytes, not a %d-byte DEK", ErrMalformed, len(pt), DEKSize)
	}
	if err == nil {
		copy(dek[:], pt)
	}
	clear(pt)
	if err != nil {
		err = fmt.Errorf("unwrap %v: %w", wk, err)
	}
	if err = e.record(ctx, rec, err); err != nil {
		dek.Zero()
		return DEK{}, err
	}
	return dek, nil
}

// Rewrap moves wk to the tenant's current KEK version. With a provider that
// implements Rewrapper the DEK never leaves the backend; otherwise it is
// unwrapped and wrapped again in this process and zeroed at once. The
// rewrap is audited like an unwrap; if the record cannot be written the new
// blob is not returned (the old one stays valid).
func (e *Envelope) Rewrap(ctx context.Context, wk WrappedKey, purpose, caller string) (WrappedKey, error) {
	rec := AuditRecord{Op: "rewrap", Tenant: wk.Tenant, KeyVersion: wk.KEKVersion, Purpose: purpose, Caller: caller}
	if err := e.check(&wk, purpose); err != nil {
		return WrappedKey{}, e.record(ctx, rec, err)
	}
	ad := bindingAD(wk.Provider, wk.Tenant, wk.Purpose)
	var (
		nv  uint32
		nct []byte
		err error
	)
	if rw, ok := e.p.(Rewrapper); ok {
		nv, nct, err = rw.Rewrap(ctx, wk.Tenant, wk.KEKVersion, wk.Ciphertext, ad)
	} else {
		var pt []byte
		pt, err = e.p.Unwrap(ctx, wk.Tenant, wk.KEKVersion, wk.Ciphertext, ad)
		if err == nil {
			nv, nct, err = e.p.Wrap(ctx, wk.Tenant, pt, ad)
		}
		clear(pt)
	}
	out := WrappedKey{Provider: wk.Provider, Tenant: wk.Tenant, Purpose: wk.Purpose, KEKVersion: nv, Ciphertext: nct}
	if err == nil {
		err = out.Validate()
	}
	if err != nil {
		err = fmt.Errorf("rewrap %v: %w", wk, err)
	}
	rec.NewKeyVersion = nv
	if err = e.record(ctx, rec, err); err != nil {
		return WrappedKey{}, err
	}
	return out, nil
}
