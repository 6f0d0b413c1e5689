package kmsplugin_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"k8s.io/kms/pkg/service"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/kmsplugin"
)

// benchPlugin is the fixture's plugin with a real audit file (fsync per
// unwrap), as in production.
func benchPlugin(b *testing.B) *kmsplugin.Plugin {
	f := newFixture(b, nil)
	audit, err := keys.OpenAuditFile(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { audit.Close() })
	p, err := kmsplugin.New(kmsplugin.Config{Envelope: keys.NewEnvelope(f.p, audit, time.Now)})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// p99 reports the 99th percentile of ds as a benchmark metric.
func p99(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkEncrypt(b *testing.B) {
	p := benchPlugin(b)
	ctx := b.Context()
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := p.Encrypt(ctx, "bench", seed(1)); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	p99(b, ds)
}

func BenchmarkDecrypt(b *testing.B) {
	p := benchPlugin(b)
	ctx := b.Context()
	res, err := p.Encrypt(ctx, "bench", seed(1))
	if err != nil {
		b.Fatal(err)
	}
	req := &service.DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID}
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := p.Decrypt(ctx, "bench", req); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	p99(b, ds)
}
