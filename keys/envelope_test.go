package keys_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
)

var fixedTime = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func clock() time.Time { return fixedTime }

// world is a memory KMS with tenants blue and red.
func world(t *testing.T) (*keystest.Memory, *keys.Envelope, *keystest.AuditLog) {
	t.Helper()
	m := keystest.NewMemory("memory", clock)
	for _, tn := range []string{"blue", "red"} {
		if err := m.Admin().CreateTenant(t.Context(), tn); err != nil {
			t.Fatal(err)
		}
	}
	audit := &keystest.AuditLog{}
	return m, keys.NewEnvelope(m.Admin(), audit, clock), audit
}

func TestEnvelopeRoundTrip(t *testing.T) {
	ctx := t.Context()
	_, env, audit := world(t)
	dek, wk, err := env.NewDEK(ctx, "blue", "file")
	if err != nil {
		t.Fatal(err)
	}
	defer dek.Zero()
	if wk.Provider != "memory" || wk.Tenant != "blue" || wk.Purpose != "file" || wk.KEKVersion != 1 {
		t.Fatalf("wrapped key fields: %v", wk)
	}
	blob, err := wk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back keys.WrappedKey
	if err := back.UnmarshalBinary(blob); err != nil {
		t.Fatal(err)
	}
	got, err := env.Unwrap(ctx, back, "file", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(&dek) {
		t.Fatal("unwrapped DEK differs")
	}
	recs := audit.Records()
	want := keys.AuditRecord{Time: fixedTime, Op: "unwrap", Tenant: "blue", KeyVersion: 1, Purpose: "file", Caller: "test", Provider: "memory", Outcome: "ok"}
	if len(recs) != 1 || recs[0] != want {
		t.Fatalf("audit records %+v, want [%+v]", recs, want)
	}
}

// TestEnvelopeBinding edits the blob's fields: every edit must fail, with
// ErrAuth where the backend is the one to notice.
func TestEnvelopeBinding(t *testing.T) {
	ctx := t.Context()
	m, env, audit := world(t)
	dek, wk, err := env.NewDEK(ctx, "blue", "file")
	if err != nil {
		t.Fatal(err)
	}
	dek.Zero()
	edit := func(f func(w *keys.WrappedKey)) keys.WrappedKey {
		w := wk
		w.Ciphertext = bytes.Clone(wk.Ciphertext)
		f(&w)
		return w
	}
	tests := []struct {
		name    string
		wk      keys.WrappedKey
		purpose string
		want    error
	}{
		{"tenant edited to red", edit(func(w *keys.WrappedKey) { w.Tenant = "red" }), "file", keys.ErrAuth},
		{"purpose edited to volume", edit(func(w *keys.WrappedKey) { w.Purpose = "volume" }), "volume", keys.ErrAuth},
		{"asked for another purpose", wk, "volume", keys.ErrMismatch},
		{"other provider", edit(func(w *keys.WrappedKey) { w.Provider = "vault" }), "file", keys.ErrMismatch},
		{"version edited", edit(func(w *keys.WrappedKey) { w.KEKVersion = 2 }), "file", keys.ErrUnknownKeyVersion},
		{"ciphertext byte", edit(func(w *keys.WrappedKey) { w.Ciphertext[5] ^= 1 }), "file", keys.ErrAuth},
		{"unknown tenant", edit(func(w *keys.WrappedKey) { w.Tenant = "green" }), "file", keys.ErrUnknownTenant},
		{"invalid tenant", edit(func(w *keys.WrappedKey) { w.Tenant = "Blue" }), "file", keys.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(audit.Records())
			got, err := env.Unwrap(ctx, tt.wk, tt.purpose, "test")
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unwrap: %v, want %v", err, tt.want)
			}
			var zero keys.DEK
			if !got.Equal(&zero) {
				t.Fatal("Unwrap returned key bytes along with an error")
			}
			recs := audit.Records()
			if len(recs) != n+1 || recs[n].Outcome != "error" || recs[n].Error != keys.ErrorClass(tt.want) {
				t.Fatalf("audit after a failed unwrap: %+v", recs[n:])
			}
		})
	}
	// Red's own tenant-scoped envelope cannot open blue's key, and blue's can.
	red := keys.NewEnvelope(m.ForTenant("red"), audit, clock)
	if _, err := red.Unwrap(ctx, wk, "file", "red-pod"); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("red's credentials on blue's key: %v, want ErrPermissionDenied", err)
	}
	blue := keys.NewEnvelope(m.ForTenant("blue"), audit, clock)
	if _, err := blue.Unwrap(ctx, wk, "file", "blue-pod"); err != nil {
		t.Fatalf("blue's credentials on blue's key: %v", err)
	}
}

func TestUnwrapFailsClosedOnAudit(t *testing.T) {
	ctx := t.Context()
	_, env, audit := world(t)
	dek, wk, err := env.NewDEK(ctx, "blue", "file")
	if err != nil {
		t.Fatal(err)
	}
	dek.Zero()
	audit.Fail = true
	got, err := env.Unwrap(ctx, wk, "file", "test")
	if !errors.Is(err, keys.ErrAudit) {
		t.Fatalf("Unwrap with a failing audit sink: %v, want ErrAudit", err)
	}
	var zero keys.DEK
	if !got.Equal(&zero) {
		t.Fatal("Unwrap released the DEK although the audit record failed")
	}
	if _, err := env.Rewrap(ctx, wk, "file", "test"); !errors.Is(err, keys.ErrAudit) {
		t.Fatalf("Rewrap with a failing audit sink: %v, want ErrAudit", err)
	}
}

// rewrapCounter adds a Rewrapper to a provider and counts its calls.
type rewrapCounter struct {
	keys.KEKProvider
	calls int
}

func (r *rewrapCounter) Rewrap(ctx context.Context, tenant string, version uint32, ct, aad []byte) (uint32, []byte, error) {
	r.calls++
	pt, err := r.Unwrap(ctx, tenant, version, ct, aad)
	if err != nil {
		return 0, nil, err
	}
	defer clear(pt)
	return r.Wrap(ctx, tenant, pt, aad)
}

func TestRewrap(t *testing.T) {
	for _, native := range []bool{false, true} {
		t.Run(fmt.Sprintf("native=%v", native), func(t *testing.T) {
			ctx := t.Context()
			m := keystest.NewMemory("memory", clock)
			admin := m.Admin()
			admin.CreateTenant(ctx, "blue")
			var p keys.KEKProvider = admin
			rc := &rewrapCounter{KEKProvider: admin}
			if native {
				p = rc
			}
			audit := &keystest.AuditLog{}
			env := keys.NewEnvelope(p, audit, clock)
			dek, wk, err := env.NewDEK(ctx, "blue", "volume")
			if err != nil {
				t.Fatal(err)
			}
			defer dek.Zero()
			if _, err := admin.Rotate(ctx, "blue"); err != nil {
				t.Fatal(err)
			}
			nwk, err := env.Rewrap(ctx, wk, "volume", "rewrap-test")
			if err != nil {
				t.Fatal(err)
			}
			if nwk.KEKVersion != 2 {
				t.Fatalf("rewrapped to version %d, want 2", nwk.KEKVersion)
			}
			if native && rc.calls != 1 {
				t.Fatalf("Rewrapper called %d times, want 1", rc.calls)
			}
			if err := admin.Retire(ctx, "blue", 2); err != nil {
				t.Fatal(err)
			}
			if _, err := env.Unwrap(ctx, wk, "volume", "t"); !errors.Is(err, keys.ErrUnknownKeyVersion) {
				t.Fatalf("old blob after retire: %v", err)
			}
			got, err := env.Unwrap(ctx, nwk, "volume", "t")
			if err != nil || !got.Equal(&dek) {
				t.Fatalf("rewrapped blob: %v", err)
			}
			recs := audit.Records()
			if recs[0].Op != "rewrap" || recs[0].KeyVersion != 1 || recs[0].NewKeyVersion != 2 || recs[0].Outcome != "ok" {
				t.Fatalf("rewrap audit record: %+v", recs[0])
			}
		})
	}
}

func TestDEKNeverPrinted(t *testing.T) {
	var d keys.DEK
	for i := range d {
		d[i] = 0xC0 + byte(i%16)
	}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("dek", "d", d, "p", &d, "s", struct{ D keys.DEK }{d})
	slog.New(slog.NewTextHandler(&logs, nil)).Info("dek", "d", d)
	outs := []string{logs.String(), d.String(), d.GoString()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q", "% x"} {
		outs = append(outs, fmt.Sprintf(verb, d), fmt.Sprintf(verb, &d), fmt.Sprintf(verb, struct{ D keys.DEK }{d}))
	}
	js, _ := json.Marshal(struct{ D keys.DEK }{d})
	outs = append(outs, string(js))
	for _, o := range outs {
		if strings.Contains(strings.ToLower(o), "c0c1c2") || strings.Contains(o, "192") || strings.Contains(o, "\xc0\xc1") {
			t.Fatalf("DEK bytes printed: %q", o)
		}
	}
}

func TestFileAudit(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sub", "audit.jsonl")
	a, err := keys.OpenAuditFile(path)
	if err != nil {
		t.Fatal(err)
	}
	recs := []keys.AuditRecord{
		{Time: fixedTime, Op: "unwrap", Tenant: "blue", KeyVersion: 1, Purpose: "file", Caller: "a", Provider: "local", Outcome: "ok"},
		{Time: fixedTime, Op: "rewrap", Tenant: "red", KeyVersion: 1, NewKeyVersion: 2, Purpose: "volume", Caller: "b", Provider: "local", Outcome: "error", Error: "auth"},
	}
	for _, r := range recs {
		if err := a.Record(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	if err := a.Record(ctx, recs[0]); err == nil {
		t.Fatal("Record after Close succeeded")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode %v, want 0600", fi.Mode().Perm())
	}
	raw, _ := os.ReadFile(path)
	wantLine := `{"time":"2026-11-27T12:00:00Z","op":"unwrap","tenant":"blue","key_version":1,"purpose":"file","caller":"a","provider":"local","outcome":"ok"}`
	if first, _, _ := strings.Cut(string(raw), "\n"); first != wantLine {
		t.Fatalf("first line\n%s\nwant\n%s", first, wantLine)
	}
	// Appending reopens without truncating.
	a2, _ := keys.OpenAuditFile(path)
	a2.Record(ctx, recs[0])
	a2.Close()
	f, _ := os.Open(path)
	defer f.Close()
	var got []keys.AuditRecord
	if err := keys.ReadAudit(f, func(r keys.AuditRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1] != recs[1] {
		t.Fatalf("read back %+v", got)
	}
	if err := keys.ReadAudit(strings.NewReader("{}\nnot json\n"), func(keys.AuditRecord) error { return nil }); !errors.Is(err, keys.ErrMalformed) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("ReadAudit of garbage: %v", err)
	}
}
