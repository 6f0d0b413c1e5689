package keys

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// AuditRecord is one line of the audit log (docs/KEYS.md). Field names are
// stable: scripts and log pipelines read them.
type AuditRecord struct {
	Time time.Time `json:"time"`
	// Op is "unwrap" or "rewrap".
	Op     string `json:"op"`
	Tenant string `json:"tenant"`
	// KeyVersion is the KEK version the wrapped key named.
	KeyVersion uint32 `json:"key_version"`
	// NewKeyVersion is the version a rewrap moved the key to.
	NewKeyVersion uint32 `json:"new_key_version,omitempty"`
	Purpose       string `json:"purpose"`
	// Caller is who asked, as the caller identified itself (a command, a
	// pod, a volume ID).
	Caller   string `json:"caller"`
	Provider string `json:"provider"`
	// Outcome is "ok" or "error".
	Outcome string `json:"outcome"`
	// Error classifies a failure (ErrorClass); empty when Outcome is "ok".
	Error string `json:"error,omitempty"`
}

// AuditSink receives audit records. Record returns only once the record is
// durable; an error means it may not be, and the caller must not release
// the key.
type AuditSink interface {
	Record(ctx context.Context, r AuditRecord) error
}

// ErrorClass names the sentinel err wraps, for audit records and JSON
// output: "auth", "unknown_tenant", "unknown_key_version",
// "backend_unavailable", "permission_denied", "shredded", "mismatch",
// "malformed", "unknown_format", "audit", or "other".
func ErrorClass(err error) string {
	classes := []struct {
		err  error
		name string
	}{
		{ErrAuth, "auth"}, {ErrUnknownTenant, "unknown_tenant"}, {ErrUnknownKeyVersion, "unknown_key_version"},
		{ErrBackendUnavailable, "backend_unavailable"}, {ErrPermissionDenied, "permission_denied"},
		{ErrShredded, "shredded"}, {ErrMismatch, "mismatch"}, {ErrMalformed, "malformed"},
		{ErrUnknownFormat, "unknown_format"}, {ErrAudit, "audit"}, {ErrInvalidTenant, "invalid_tenant"},
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return "other"
}

// FileAudit appends JSON lines to a file opened with O_APPEND and mode
// 0600, and fsyncs after every record, so a record is on disk before the
// key it describes is released. Several processes may append to one file:
// each record is a single write(2) on an O_APPEND descriptor.
type FileAudit struct {
	mu sync.Mutex
	f  *os.File
}

// OpenAuditFile opens (creating it and its directory if needed) the audit
// log at path.
func OpenAuditFile(path string) (*FileAudit, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	return &FileAudit{f: f}, nil
}

// Record appends r as one JSON line and fsyncs.
func (a *FileAudit) Record(ctx context.Context, r AuditRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	line, err := json.Marshal(r)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return errors.New("audit log is closed")
	}
	if _, err := a.f.Write(line); err != nil {
		return fmt.Errorf("audit log %s: %w", a.f.Name(), err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("audit log %s: %w", a.f.Name(), err)
	}
	return nil
}

// Close closes the file.
func (a *FileAudit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// maxAuditLine bounds one line of the audit log when reading it back.
const maxAuditLine = 64 << 10

// ReadAudit calls fn for each record of an audit log, in order. A line that
// is not a record is an error naming its line number.
func ReadAudit(r io.Reader, fn func(AuditRecord) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxAuditLine)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Op == "" {
			return fmt.Errorf("audit log line %d: %w: not an audit record", n, ErrMalformed)
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}
