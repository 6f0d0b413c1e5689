package keystest

import (
	"context"
	"errors"
	"sync"

	"github.com/tencrypt/tencrypt/keys"
)

// AuditLog is an in-memory keys.AuditSink for tests. Set Fail to make every
// Record fail, as a full disk would.
type AuditLog struct {
	mu      sync.Mutex
	records []keys.AuditRecord
	Fail    bool
}

// ErrAuditFull is what a failing AuditLog returns.
var ErrAuditFull = errors.New("keystest: audit sink failing on purpose")

// Record stores r, or fails if Fail is set.
func (a *AuditLog) Record(_ context.Context, r keys.AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Fail {
		return ErrAuditFull
	}
	a.records = append(a.records, r)
	return nil
}

// Records returns a copy of what was recorded.
func (a *AuditLog) Records() []keys.AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]keys.AuditRecord(nil), a.records...)
}
