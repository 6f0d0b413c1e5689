package kmsplugin_test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/vault"
	"github.com/tencrypt/tencrypt/keys/vault/vaulttest"
	"github.com/tencrypt/tencrypt/kmsplugin"
	"github.com/tencrypt/tencrypt/kmsplugin/kubetest"
)

// BenchmarkAPIServerSecrets measures Secrets created and read back per
// second through a real kube-apiserver with each storage provider: identity
// (no encryption), aescbc (a static key in the configuration file) and this
// plugin over a local keyring and over Vault. One op is a create and a get.
//
//	go test -run XXX -bench APIServerSecrets -benchtime 300x ./kmsplugin/
func BenchmarkAPIServerSecrets(b *testing.B) {
	aesKey := make([]byte, 32)
	rand.Read(aesKey)
	static := func(provider string) func(b *testing.B) string {
		return func(*testing.B) string {
			return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["secrets"]
    providers:
      - ` + provider + "\n"
		}
	}
	withPlugin := func(open func(b *testing.B) keys.KEKProvider) func(b *testing.B) string {
		return func(b *testing.B) string {
			p := open(b)
			if err := p.CreateTenant(b.Context(), kmsplugin.DefaultKey); err != nil {
				b.Fatal(err)
			}
			audit, err := keys.OpenAuditFile(filepath.Join(b.TempDir(), "audit.jsonl"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { audit.Close() })
			plug, err := kmsplugin.New(kmsplugin.Config{Envelope: keys.NewEnvelope(p, audit, time.Now)})
			if err != nil {
				b.Fatal(err)
			}
			dir, err := filepathTemp(b)
			if err != nil {
				b.Fatal(err)
			}
			rp := &runningPlugin{t: b, plug: plug, sock: filepath.Join(dir, "kms.sock")}
			rp.start()
			b.Cleanup(rp.stop)
			return encryptionConfig(rp.sock)
		}
	}
	openLocal := func(b *testing.B) keys.KEKProvider { return localKeyring(b) }
	openVault := func(b *testing.B) keys.KEKProvider {
		srv := vaulttest.Start(b)
		p, err := vault.Open(b.Context(), vault.Config{Addr: srv.Addr, Token: srv.RootToken, Mount: srv.Mount})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { p.Close() })
		return p
	}
	for _, c := range []struct {
		name   string
		config func(b *testing.B) string
	}{
		{"identity", static("identity: {}")},
		{"aescbc", static(`aescbc:
          keys:
            - name: k1
              secret: ` + base64.StdEncoding.EncodeToString(aesKey))},
		{"kms-local", withPlugin(openLocal)},
		{"kms-vault", withPlugin(openVault)},
	} {
		b.Run(c.name, func(b *testing.B) {
			enc := c.config(b)
			etcd := kubetest.StartEtcd(b)
			api := kubetest.StartAPIServer(b, etcd, kubetest.APIServerOptions{EncryptionConfig: enc})
			ns := testenv.Name("bench-")
			if err := api.CreateNamespace(b.Context(), ns); err != nil {
				b.Fatal(err)
			}
			data := map[string][]byte{"password": []byte("benchmark")}
			// Warm up: a just-ready kube-apiserver is still finishing its
			// bootstrap work, and the first write fetches the seed.
			for i := range 100 {
				if err := api.CreateSecret(b.Context(), ns, fmt.Sprintf("warm-%d", i), data); err != nil {
					b.Fatal(err)
				}
			}
			var ds []time.Duration
			i := 0
			for b.Loop() {
				start := time.Now()
				name := fmt.Sprintf("s-%d", i)
				i++
				if err := api.CreateSecret(b.Context(), ns, name, data); err != nil {
					b.Fatal(err)
				}
				if _, err := api.GetSecret(b.Context(), ns, name); err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
			}
			slices.Sort(ds)
			b.ReportMetric(float64(len(ds))/b.Elapsed().Seconds(), "secrets/s")
			b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
