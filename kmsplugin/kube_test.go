package kmsplugin_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/keys/vault"
	"github.com/tencrypt/tencrypt/keys/vault/vaulttest"
	"github.com/tencrypt/tencrypt/kmsplugin"
	"github.com/tencrypt/tencrypt/kmsplugin/kubetest"
)

// The provider name in the EncryptionConfiguration; etcd values start with
// k8s:enc:kms:v2:<name>:.
const providerName = "tencrypt"

// pickupTimeout bounds how long kube-apiserver may take to notice a new
// key_id or a plugin that is back: it polls Status every minute when healthy
// and every 10 s when not.
const pickupTimeout = 4 * time.Minute

func encryptionConfig(sock string) string {
	return `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: ["secrets"]
    providers:
      - kms:
          apiVersion: v2
          name: ` + providerName + `
          endpoint: unix://` + sock + `
          timeout: 5s
`
}

// runningPlugin is the plugin served on a socket, stoppable and restartable.
type runningPlugin struct {
	t      testing.TB
	plug   *kmsplugin.Plugin
	sock   string
	cancel context.CancelFunc
	done   chan error
}

func (r *runningPlugin) start() {
	r.t.Helper()
	srv, err := kmsplugin.NewServer(r.plug, "unix://"+r.sock, "", nil)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- srv.Serve(ctx) }()
}

func (r *runningPlugin) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("plugin server: %v", err)
	}
	r.cancel = nil
}

// controlPlane is the flow of the issue, run once per backend: admin
// rotates the cluster key; env is the plugin's envelope (its audit in audit).
func controlPlane(t *testing.T, admin keys.KEKProvider, env *keys.Envelope, audit *keystest.AuditLog) {
	ctx := t.Context()
	plug, err := kmsplugin.New(kmsplugin.Config{Envelope: env})
	if err != nil {
		t.Fatal(err)
	}
	// Short: a Unix socket path is limited to 108 bytes.
	sockDir, err := filepathTemp(t)
	if err != nil {
		t.Fatal(err)
	}
	rp := &runningPlugin{t: t, plug: plug, sock: filepath.Join(sockDir, "kms.sock")}
	rp.start()
	t.Cleanup(rp.stop)

	etcd := kubetest.StartEtcd(t)
	api := kubetest.StartAPIServer(t, etcd, kubetest.APIServerOptions{EncryptionConfig: encryptionConfig(rp.sock)})
	ns := testenv.Name("kms-")
	if err := api.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	st, err := plug.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keyID1 := st.KeyID
	marker := testenv.Name("plaintext-marker-")
	data := func(name string) map[string][]byte { return map[string][]byte{"password": []byte(marker + "/" + name)} }

	// raw reads a secret's etcd value and checks it is sealed by the plugin
	// under wantKeyID.
	raw := func(name, wantKeyID string) []byte {
		t.Helper()
		v, err := etcd.Get(ctx, kubetest.SecretKey(ns, name))
		if err != nil || v == nil {
			t.Fatalf("etcd value of secret %s: %v (present: %v)", name, err, v != nil)
		}
		checkSealed(t, name, v, marker, wantKeyID)
		return v
	}
	readBack := func(name string) {
		t.Helper()
		s, err := api.GetSecret(ctx, ns, name)
		if err != nil {
			t.Fatalf("read secret %s back: %v", name, err)
		}
		if !bytes.Equal(s.Data["password"], data(name)["password"]) {
			t.Fatalf("secret %s read back as %q", name, s.Data["password"])
		}
	}

	// 1. A Secret reads back in clear through the API, and is sealed in etcd.
	if err := api.CreateSecret(ctx, ns, "before", data("before")); err != nil {
		t.Fatal(err)
	}
	readBack("before")
	raw("before", keyID1)

	// 2. A KEK rotation: kube-apiserver picks up the new key_id from Status
	// without a restart; new Secrets are sealed under it.
	if _, err := admin.Rotate(ctx, kmsplugin.DefaultKey); err != nil {
		t.Fatal(err)
	}
	if st, err = plug.Status(ctx); err != nil {
		t.Fatal(err)
	}
	keyID2 := st.KeyID
	if keyID2 == keyID1 {
		t.Fatalf("rotation did not change the key_id (%s)", keyID1)
	}
	var after string
	rotated := time.Now()
	for i, deadline := 0, time.Now().Add(pickupTimeout); ; i++ {
		name := fmt.Sprintf("after-%d", i)
		if err := api.CreateSecret(ctx, ns, name, data(name)); err != nil {
			t.Fatal(err)
		}
		v, err := etcd.Get(ctx, kubetest.SecretKey(ns, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(v, []byte(keyID2)) {
			after = name
			break
		}
		checkSealed(t, name, v, marker, keyID1)
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver still seals under %s %v after the rotation to %s", keyID1, pickupTimeout, keyID2)
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("kube-apiserver sealed under %s %v after the rotation", keyID2, time.Since(rotated).Round(time.Second))
	raw(after, keyID2)
	readBack("before")
	readBack(after)
	raw("before", keyID1) // untouched until rewritten

	// 3. Rewriting every Secret moves it to the new key.
	if n, err := api.RewriteSecrets(ctx, ns); err != nil || n < 2 {
		t.Fatalf("rewrite: %d secrets, %v", n, err)
	}
	raw("before", keyID2)
	readBack("before")
	// The runbook's check before retiring: no value in etcd names an old
	// key_id any more (docs/KMS-PLUGIN.md, step 4).
	values, err := etcd.Values(ctx, "/registry/")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, v := range values {
		for _, m := range keyIDInValue.FindAll(v, -1) {
			seen[string(m)]++
		}
	}
	if len(seen) != 1 || seen[keyID2] < 2 {
		t.Fatalf("key_ids in etcd after the rewrite: %v, want only %s", seen, keyID2)
	}

	// 4. A tampered ciphertext (the wrapped seed inside the stored object)
	// is refused: the read fails, and the plugin's audit shows the refusal.
	orig := raw("before", keyID2)
	i := bytes.Index(orig, []byte("TCWK\x01"))
	if i < 0 {
		t.Fatal("no tencrypt wrapped key in the etcd value")
	}
	_, n, err := keys.ParseWrappedKey(orig[i:])
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig)
	bad[i+n-1] ^= 0x01
	if err := etcd.Put(ctx, kubetest.SecretKey(ns, "before"), bad); err != nil {
		t.Fatal(err)
	}
	if _, err := api.GetSecret(ctx, ns, "before"); err == nil {
		t.Fatal("kube-apiserver returned a secret whose wrapped seed was tampered with")
	}
	refused := false
	for _, r := range audit.Records() {
		refused = refused || (r.Outcome == "error" && r.Tenant == kmsplugin.DefaultKey)
	}
	if !refused {
		t.Fatalf("no refused unwrap in the audit log: %+v", audit.Records())
	}
	if err := etcd.Put(ctx, kubetest.SecretKey(ns, "before"), orig); err != nil {
		t.Fatal(err)
	}
	readBack("before")

	// 5. The plugin stopped: existing Secrets keep reading (kube-apiserver
	// holds their data key), a write either fails or is sealed under the
	// current key_id, never stored in clear nor under an invented key_id.
	rp.stop()
	readBack("before")
	readBack(after)
	err = api.CreateSecret(ctx, ns, "while-down", data("while-down"))
	t.Logf("create with the plugin stopped: %v", err)
	if err == nil {
		raw("while-down", keyID2)
	} else if v, gerr := etcd.Get(ctx, kubetest.SecretKey(ns, "while-down")); gerr != nil || v != nil {
		t.Fatalf("a failed create left a value in etcd (%v): %q", gerr, v)
	}
	// Back up: writes work again once kube-apiserver's probe sees it.
	rp.start()
	for deadline := time.Now().Add(pickupTimeout); ; {
		err := api.CreateSecret(ctx, ns, "back-up", data("back-up"))
		if err == nil {
			break
		}
		var ae *kubetest.APIError
		if errors.As(err, &ae) && ae.Code == 409 { // created by the last try after all
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes still fail %v after the plugin came back: %v", pickupTimeout, err)
		}
		time.Sleep(5 * time.Second)
	}
	raw("back-up", keyID2)
	readBack("back-up")
}

// keyIDInValue is the runbook's grep for key_ids in etcd values.
var keyIDInValue = regexp.MustCompile(`tencrypt:1:[a-z0-9-]*:cluster-etcd:[0-9]*:[0-9]*`)

// checkSealed fails unless v is a KMS v2 value of this plugin under keyID,
// with no trace of the plaintext.
func checkSealed(t *testing.T, name string, v []byte, marker, keyID string) {
	t.Helper()
	prefix := "k8s:enc:kms:v2:" + providerName + ":"
	if !bytes.HasPrefix(v, []byte(prefix)) {
		t.Fatalf("etcd value of secret %s does not start with %q: %q", name, prefix, v[:min(len(v), 40)])
	}
	if bytes.Contains(v, []byte(marker)) || bytes.Contains(v, []byte(base64.StdEncoding.EncodeToString([]byte(marker))[:16])) {
		t.Fatalf("etcd value of secret %s holds its plaintext", name)
	}
	if !bytes.Contains(v, []byte(keyID)) {
		t.Fatalf("etcd value of secret %s is not under key_id %s: %q", name, keyID, v)
	}
}

// filepathTemp makes a short temp dir (socket paths are limited to 108
// bytes, and t.TempDir's can be long), removed in t.Cleanup.
func filepathTemp(t testing.TB) (string, error) {
	d, err := os.MkdirTemp("", "kms-")
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d, nil
}

// TestKubeAPIServerWithLocalKeyring runs a real etcd and kube-apiserver
// whose EncryptionConfiguration names the plugin, over a local keyring.
func TestKubeAPIServerWithLocalKeyring(t *testing.T) {
	p := localKeyring(t)
	if err := p.CreateTenant(t.Context(), kmsplugin.DefaultKey); err != nil {
		t.Fatal(err)
	}
	audit := &keystest.AuditLog{}
	controlPlane(t, p, keys.NewEnvelope(p, audit, time.Now), audit)
}

// TestKubeAPIServerWithVault is the same against a real Vault's transit
// engine.
func TestKubeAPIServerWithVault(t *testing.T) {
	ctx := t.Context()
	srv := vaulttest.Start(t)
	p, err := vault.Open(ctx, vault.Config{Addr: srv.Addr, Token: srv.RootToken, Mount: srv.Mount, KeyPrefix: testenv.Name("t") + "-"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.CreateTenant(ctx, kmsplugin.DefaultKey); err != nil {
		t.Fatal(err)
	}
	audit := &keystest.AuditLog{}
	controlPlane(t, p, keys.NewEnvelope(p, audit, time.Now), audit)
}
