package pkcs11

import (
	"context"

	"github.com/miekg/pkcs11"
)

// WithSession runs fn with a logged-in session on tenant's token, for tests
// that inspect the token's objects directly.
func WithSession(ctx context.Context, p *Provider, tenant string, fn func(*pkcs11.Ctx, pkcs11.SessionHandle) error) error {
	t, err := p.token(ctx, tenant)
	if err != nil {
		return err
	}
	return t.do(ctx, func(s pkcs11.SessionHandle) error { return fn(p.mod.ctx, s) })
}

// KEKLabel and TombstoneLabel are the object labels of docs/PKCS11.md.
var (
	KEKLabel       = kekLabel
	TombstoneLabel = tombstoneLabel
)
