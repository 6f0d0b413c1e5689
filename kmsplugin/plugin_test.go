package kmsplugin_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"
	"k8s.io/kms/pkg/service"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/kmsplugin"
)

// fixture is a local keyring holding the cluster key, and a plugin over it.
type fixture struct {
	p     keys.KEKProvider
	audit *keystest.AuditLog
	env   *keys.Envelope
	plug  *kmsplugin.Plugin
	reg   *prometheus.Registry
}

// localKeyring is a new local keyring in a temporary directory, opened
// with its admin key file and closed when tb ends.
func localKeyring(tb testing.TB) *local.Provider {
	tb.Helper()
	dir := tb.TempDir()
	cfg := local.Config{Path: filepath.Join(dir, "keyring"), KeyFile: filepath.Join(dir, "admin.key")}
	if err := local.GenerateKeyFile(cfg.KeyFile); err != nil {
		tb.Fatal(err)
	}
	if err := local.Init(tb.Context(), local.InitOptions{Path: cfg.Path, KeyFile: cfg.KeyFile}); err != nil {
		tb.Fatal(err)
	}
	p, err := local.Open(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

func newFixture(t testing.TB, wrap func(keys.KEKProvider) keys.KEKProvider) *fixture {
	t.Helper()
	lp := localKeyring(t)
	if err := lp.CreateTenant(t.Context(), kmsplugin.DefaultKey); err != nil {
		t.Fatal(err)
	}
	var p keys.KEKProvider = lp
	if wrap != nil {
		p = wrap(p)
	}
	f := &fixture{p: p, audit: &keystest.AuditLog{}, reg: prometheus.NewRegistry()}
	f.env = keys.NewEnvelope(p, f.audit, time.Now)
	plug, err := kmsplugin.New(kmsplugin.Config{Envelope: f.env, Metrics: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	f.plug = plug
	return f
}

func seed(b byte) []byte { return bytes.Repeat([]byte{b}, kmsplugin.SeedSize) }

func (f *fixture) status(t *testing.T) kmsplugin.KeyID {
	t.Helper()
	st, err := f.plug.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != "v2" || st.Healthz != "ok" {
		t.Fatalf("status = %+v, want version v2 and healthz ok", st)
	}
	id, err := kmsplugin.ParseKeyID(st.KeyID)
	if err != nil {
		t.Fatalf("status key_id: %v", err)
	}
	return id
}

// noLeak fails if err's text holds s raw or in hex.
func noLeak(t *testing.T, err error, s []byte) {
	t.Helper()
	msg := err.Error()
	if strings.Contains(msg, string(s)) || strings.Contains(strings.ToLower(msg), hex.EncodeToString(s)) {
		t.Fatalf("error reveals secret bytes: %v", err)
	}
}

func TestStatusEncryptDecrypt(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	id := f.status(t)
	if id.Backend != "local" || id.Key != kmsplugin.DefaultKey || id.Version != 1 || id.Created <= 0 {
		t.Fatalf("key_id = %+v, want local/cluster-etcd/version 1 with a creation time", id)
	}
	in := seed(0x5a)
	res, err := f.plug.Encrypt(ctx, "uid-1", append([]byte(nil), in...))
	if err != nil {
		t.Fatal(err)
	}
	if res.KeyID != id.String() {
		t.Fatalf("encrypt key_id %q, status said %q", res.KeyID, id)
	}
	if len(res.Ciphertext) > kmsplugin.MaxCiphertextSize || len(res.KeyID) > kmsplugin.MaxKeyIDSize || len(res.Annotations) != 0 {
		t.Fatalf("response out of KMS v2 bounds: %d-byte ciphertext, %d-byte key_id, %d annotations", len(res.Ciphertext), len(res.KeyID), len(res.Annotations))
	}
	if bytes.Contains(res.Ciphertext, in[:8]) {
		t.Fatal("the seed shows in the ciphertext")
	}
	out, err := f.plug.Decrypt(ctx, "uid-2", &service.DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatal("decrypt did not return the seed")
	}
	recs := f.audit.Records()
	if len(recs) != 1 || recs[0].Op != "unwrap" || recs[0].Tenant != kmsplugin.DefaultKey || recs[0].Purpose != kmsplugin.Purpose ||
		recs[0].Caller != "kube-apiserver uid=uid-2" || recs[0].Outcome != "ok" {
		t.Fatalf("audit records = %+v, want one successful unwrap by kube-apiserver uid=uid-2", recs)
	}
	// Two encryptions of one seed differ (fresh nonces) but both open.
	res2, err := f.plug.Encrypt(ctx, "uid-3", append([]byte(nil), in...))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(res2.Ciphertext, res.Ciphertext) {
		t.Fatal("two encryptions gave the same ciphertext")
	}
}

func TestEncryptZeroesInputAndChecksSize(t *testing.T) {
	f := newFixture(t, nil)
	in := seed(0x33)
	if _, err := f.plug.Encrypt(t.Context(), "u", in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, make([]byte, len(in))) {
		t.Fatal("Encrypt left the seed in the request buffer")
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		_, err := f.plug.Encrypt(t.Context(), "u", bytes.Repeat([]byte{0x77}, n))
		if status.Code(err) != codes.InvalidArgument || !errors.Is(err, keys.ErrMalformed) {
			t.Fatalf("encrypt of %d bytes: %v, want InvalidArgument/ErrMalformed", n, err)
		}
	}
}

func TestRotationKeepsOldCiphertextReadable(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	old := f.status(t)
	res1, err := f.plug.Encrypt(ctx, "u", seed(1))
	if err != nil {
		t.Fatal(err)
	}
	if v, err := f.p.Rotate(ctx, kmsplugin.DefaultKey); err != nil || v != 2 {
		t.Fatalf("rotate: %d, %v", v, err)
	}
	cur := f.status(t)
	if cur.Version != 2 || cur.String() == old.String() || cur.Created != old.Created {
		t.Fatalf("after rotation key_id %s (was %s), want version 2 of the same key", cur, old)
	}
	res2, err := f.plug.Encrypt(ctx, "u", seed(2))
	if err != nil {
		t.Fatal(err)
	}
	if res2.KeyID != cur.String() {
		t.Fatalf("encrypt after rotation used %s, want %s", res2.KeyID, cur)
	}
	for i, r := range []*service.EncryptResponse{res1, res2} {
		out, err := f.plug.Decrypt(ctx, "u", &service.DecryptRequest{Ciphertext: r.Ciphertext, KeyID: r.KeyID})
		if err != nil || !bytes.Equal(out, seed(byte(i+1))) {
			t.Fatalf("decrypt of the seed wrapped under v%d: %v", i+1, err)
		}
	}
	// A ciphertext presented with the other version's key_id is refused
	// before the backend is asked.
	_, err = f.plug.Decrypt(ctx, "u", &service.DecryptRequest{Ciphertext: res1.Ciphertext, KeyID: res2.KeyID})
	if !errors.Is(err, keys.ErrMismatch) || status.Code(err) != codes.InvalidArgument {
		t.Fatalf("decrypt with a key_id of another version: %v", err)
	}
}

func TestDecryptRefusesTampering(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	in := seed(0xa5)
	res, err := f.plug.Encrypt(ctx, "u", append([]byte(nil), in...))
	if err != nil {
		t.Fatal(err)
	}
	// Flip every byte of the blob in turn: each is refused, none reveals the seed.
	for i := range res.Ciphertext {
		ct := append([]byte(nil), res.Ciphertext...)
		ct[i] ^= 0x01
		out, err := f.plug.Decrypt(ctx, "u", &service.DecryptRequest{Ciphertext: ct, KeyID: res.KeyID})
		if err == nil {
			t.Fatalf("byte %d flipped: decrypt succeeded", i)
		}
		if out != nil {
			t.Fatalf("byte %d flipped: decrypt returned data with its error", i)
		}
		noLeak(t, err, in)
	}
	cases := map[string]*service.DecryptRequest{
		"truncated":      {Ciphertext: res.Ciphertext[:len(res.Ciphertext)-1], KeyID: res.KeyID},
		"extended":       {Ciphertext: append(append([]byte(nil), res.Ciphertext...), 0), KeyID: res.KeyID},
		"annotations":    {Ciphertext: res.Ciphertext, KeyID: res.KeyID, Annotations: map[string][]byte{"x.example.com": []byte("1")}},
		"no key_id":      {Ciphertext: res.Ciphertext},
		"foreign key_id": {Ciphertext: res.Ciphertext, KeyID: "aws-kms:arn:1"},
		"empty":          {},
	}
	for name, req := range cases {
		if _, err := f.plug.Decrypt(ctx, "u", req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%s: %v, want InvalidArgument", name, err)
		}
	}
	// A genuine blob of another purpose (a file DEK under the same key)
	// is refused too.
	dek, wk, err := f.env.NewDEK(ctx, kmsplugin.DefaultKey, "file")
	if err != nil {
		t.Fatal(err)
	}
	dek.Zero()
	blob, _ := wk.MarshalBinary()
	if _, err := f.plug.Decrypt(ctx, "u", &service.DecryptRequest{Ciphertext: blob, KeyID: res.KeyID}); !errors.Is(err, keys.ErrMismatch) {
		t.Fatalf("a file DEK presented to the plugin: %v, want ErrMismatch", err)
	}
	// The audit log has a failed unwrap for every tampered blob that reached
	// the backend, and no success.
	for _, r := range f.audit.Records() {
		if r.Outcome == "ok" {
			t.Fatalf("a tampered ciphertext was unwrapped: %+v", r)
		}
	}
}

func TestDecryptRefusesOtherKey(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, nil)
	if err := f.p.CreateTenant(ctx, "other-cluster"); err != nil {
		t.Fatal(err)
	}
	other, err := kmsplugin.New(kmsplugin.Config{Envelope: f.env, Key: "other-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := other.Encrypt(ctx, "u", seed(9))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.plug.Decrypt(ctx, "u", &service.DecryptRequest{Ciphertext: res.Ciphertext, KeyID: res.KeyID}); !errors.Is(err, keys.ErrMismatch) {
		t.Fatalf("decrypt of another key's ciphertext: %v, want ErrMismatch", err)
	}
}

// downProvider answers nothing, like a Vault that cannot be reached.
type downProvider struct {
	keys.KEKProvider
	down bool
}

func (d *downProvider) Tenant(ctx context.Context, tenant string) (keys.TenantInfo, error) {
	if d.down {
		return keys.TenantInfo{}, fmt.Errorf("test: %w", keys.ErrBackendUnavailable)
	}
	return d.KEKProvider.Tenant(ctx, tenant)
}

func (d *downProvider) Wrap(ctx context.Context, tenant string, pt, aad []byte) (uint32, []byte, error) {
	if d.down {
		return 0, nil, fmt.Errorf("test: %w", keys.ErrBackendUnavailable)
	}
	return d.KEKProvider.Wrap(ctx, tenant, pt, aad)
}

func TestStatusNoticesUnreachableBackend(t *testing.T) {
	var dp *downProvider
	f := newFixture(t, func(p keys.KEKProvider) keys.KEKProvider { dp = &downProvider{KEKProvider: p}; return dp })
	f.status(t)
	dp.down = true
	st, err := f.plug.Status(t.Context())
	if status.Code(err) != codes.Unavailable || st != nil {
		t.Fatalf("status with the backend down: %+v, %v; want no key_id and Unavailable", st, err)
	}
	if _, err := f.plug.Encrypt(t.Context(), "u", seed(1)); status.Code(err) != codes.Unavailable {
		t.Fatalf("encrypt with the backend down: %v, want Unavailable", err)
	}
	dp.down = false
	f.status(t)
}

func TestNewRejectsBadKey(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := kmsplugin.New(kmsplugin.Config{Envelope: f.env, Key: "Cluster_Etcd"}); !errors.Is(err, keys.ErrInvalidTenant) {
		t.Fatalf("bad key name: %v", err)
	}
	if _, err := kmsplugin.New(kmsplugin.Config{}); err == nil {
		t.Fatal("New without an envelope succeeded")
	}
}

// TestServerOverSocket drives the plugin as kube-apiserver does: gRPC over
// the Unix socket; and reads its health and metrics endpoint.
func TestServerOverSocket(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f := newFixture(t, nil)
	sock := filepath.Join(t.TempDir(), "run", "kms.sock")
	srv, err := kmsplugin.NewServer(f.plug, "unix://"+sock, "127.0.0.1:0", f.reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	if fi, err := os.Lstat(sock); err != nil {
		t.Fatal(err)
	} else if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s has mode %v; want a 0600 socket", sock, fi.Mode())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(sock), ".kms-socket-*")); len(left) != 0 {
		t.Fatalf("temporary bind directories left: %v", left)
	}

	// A second plugin on the same socket is refused: it would cut the live one off.
	if _, err := kmsplugin.NewServer(f.plug, "unix://"+sock, "", nil); err == nil || !strings.Contains(err.Error(), "another plugin") {
		t.Fatalf("second server on a live socket: %v", err)
	}

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := kmsapi.NewKeyManagementServiceClient(conn)
	st, err := c.Status(ctx, &kmsapi.StatusRequest{})
	if err != nil || st.Version != "v2" || st.Healthz != "ok" {
		t.Fatalf("status over gRPC: %v, %v", st, err)
	}
	enc, err := c.Encrypt(ctx, &kmsapi.EncryptRequest{Plaintext: seed(7), Uid: "grpc"})
	if err != nil || enc.KeyId != st.KeyId {
		t.Fatalf("encrypt over gRPC: %v, %v", enc, err)
	}
	dec, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "grpc"})
	if err != nil || !bytes.Equal(dec.Plaintext, seed(7)) {
		t.Fatalf("decrypt over gRPC: %v", err)
	}
	bad := append([]byte(nil), enc.Ciphertext...)
	bad[len(bad)-1] ^= 1
	if _, err := c.Decrypt(ctx, &kmsapi.DecryptRequest{Ciphertext: bad, KeyId: enc.KeyId}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("tampered decrypt over gRPC: %v, want InvalidArgument", err)
	}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := get("/metrics")
	for _, want := range []string{
		`tencrypt_kms_operations_total{op="decrypt",outcome="auth"} 1`,
		`tencrypt_kms_operations_total{op="encrypt",outcome="ok"} 1`,
		`tencrypt_kms_healthy 1`,
		`tencrypt_kms_key_version 1`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics (%d) lacks %q:\n%s", code, want, body)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := net.Dial("unix", sock); err == nil {
		t.Fatal("the socket still answers after shutdown")
	}
}

func TestSocketPath(t *testing.T) {
	for in, want := range map[string]string{
		"unix:///run/tencrypt/kms.sock": "/run/tencrypt/kms.sock",
		"/run/x/../kms.sock":            "/run/kms.sock",
	} {
		if got, err := kmsplugin.SocketPath(in); err != nil || got != want {
			t.Fatalf("SocketPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"tcp://127.0.0.1:1", "unix://relative.sock", "kms.sock", ""} {
		if _, err := kmsplugin.SocketPath(in); err == nil {
			t.Fatalf("SocketPath(%q) accepted", in)
		}
	}
}
