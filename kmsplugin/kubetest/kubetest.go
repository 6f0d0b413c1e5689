// Package kubetest runs a real etcd and kube-apiserver on 127.0.0.1 for
// tests: random free ports, files in the test's temp dir, both stopped in
// t.Cleanup even when the test fails. The binaries are the ones
// scripts/build-kube caches under $TENCRYPT_CACHE/bin; a test that cannot
// find them fails, naming that script.
package kubetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tencrypt/tencrypt/internal/testenv"
)

// startTimeout bounds each server's start on a loaded 2-core machine.
const startTimeout = 3 * time.Minute

// Binary returns the path of a server scripts/build-kube caches (etcd,
// kube-apiserver), or an error telling how to build it.
func Binary(name string) (string, error) {
	cache := os.Getenv("TENCRYPT_CACHE")
	if cache == "" {
		cache = "/var/cache/tencrypt"
	}
	bin := filepath.Join(cache, "bin", name)
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("no %s binary at %s: run scripts/build-kube (scripts/setup runs it; once per machine, about 15-25 minutes on 2 cores)", name, bin)
	}
	return bin, nil
}

// proc is a server started by this package.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProc(t testing.TB, name, dir string, args ...string) *proc {
	t.Helper()
	bin, err := Binary(name)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	// Its own process group, killed with the test binary if that dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("running %s: %v", bin, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// stop terminates the server's process group and waits for it.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail is the end of the server's log, for failure messages.
func (p *proc) LogTail() string {
	return testenv.FileTail(p.log, 6000)
}

// waitFor polls ready until it succeeds, the server exits or startTimeout
// passes; it fails t with the server's log otherwise.
func (p *proc) waitFor(t testing.TB, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	var err error
	for {
		if err = ready(); err == nil {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited while starting (%v); its log ends:\n%s", p.name, err, p.LogTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v; its log ends:\n%s", p.name, startTimeout, err, p.LogTail())
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free loopback port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// Etcd is a running single-member etcd.
type Etcd struct {
	// Endpoint is its client URL, http://127.0.0.1:PORT.
	Endpoint string
	// Client reads and writes raw values.
	Client *clientv3.Client
	*proc
}

// StartEtcd starts an etcd with its data in a temp dir.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	p := startProc(t, "etcd", dir,
		"--name=test", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=test="+peer, "--log-level=warn")
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e := &Etcd{Endpoint: client, Client: c, proc: p}
	p.waitFor(t, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.Get(ctx, "health-probe")
		return err
	})
	return e
}

// Get returns the raw value stored at key, or nil if there is none.
func (e *Etcd) Get(ctx context.Context, key string) ([]byte, error) {
	r, err := e.Client.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(r.Kvs) == 0 {
		return nil, nil
	}
	return r.Kvs[0].Value, nil
}

// Values returns the raw values of every key under prefix.
func (e *Etcd) Values(ctx context.Context, prefix string) ([][]byte, error) {
	r, err := e.Client.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		out = append(out, kv.Value)
	}
	return out, nil
}

// Put stores a raw value at key, behind kube-apiserver's back.
func (e *Etcd) Put(ctx context.Context, key string, value []byte) error {
	_, err := e.Client.Put(ctx, key, string(value))
	return err
}

// APIServer is a running kube-apiserver, and an HTTPS client for it
// authenticated as a member of system:masters.
type APIServer struct {
	// URL is https://127.0.0.1:PORT.
	URL    string
	token  string
	client *http.Client
	*proc
}

// APIServerOptions configure StartAPIServer.
type APIServerOptions struct {
	// EncryptionConfig is the EncryptionConfiguration's YAML; empty means none.
	EncryptionConfig string
	// ExtraArgs are added to the command line.
	ExtraArgs []string
}

// StartAPIServer starts a kube-apiserver on etcd and waits until /readyz
// answers ok.
func StartAPIServer(t testing.TB, etcd *Etcd, opts APIServerOptions) *APIServer {
	t.Helper()
	dir := t.TempDir()
	port := freePorts(t, 1)[0]
	tok := make([]byte, 16)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	write := func(name, data string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tokens := write("tokens.csv", token+`,admin,admin-uid,"system:masters"`+"\n")
	// The service-account signing key kube-apiserver insists on (ES256);
	// no token is ever issued in these tests.
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	saKey := write("sa.key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})))
	saPub := write("sa.pub", string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})))
	certDir := filepath.Join(dir, "certs")
	args := []string{
		"--etcd-servers=" + etcd.Endpoint,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + strconv.Itoa(port),
		"--endpoint-reconciler-type=none", "--cert-dir=" + certDir,
		"--service-account-issuer=https://kubernetes.default.svc", "--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey, "--token-auth-file=" + tokens,
		"--authorization-mode=RBAC", "--service-cluster-ip-range=10.96.0.0/24",
		"--etcd-prefix=/registry", "--profiling=false", "--v=1",
	}
	if opts.EncryptionConfig != "" {
		args = append(args, "--encryption-provider-config="+write("encryption.yaml", opts.EncryptionConfig))
	}
	args = append(args, opts.ExtraArgs...)
	p := startProc(t, "kube-apiserver", dir, args...)
	a := &APIServer{URL: "https://127.0.0.1:" + strconv.Itoa(port), token: token, proc: p}
	// kube-apiserver writes its self-signed serving certificate (and the CA
	// that signed it) to --cert-dir: trust exactly that.
	p.waitFor(t, func() error {
		if a.client == nil {
			pemData, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pemData) {
				return errors.New("no certificate in apiserver.crt yet")
			}
			a.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			}}
		}
		code, body, err := a.Do(context.Background(), "GET", "/readyz", nil)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	return a
}

// Do sends a request with a JSON body (if body is not nil) and returns the
// status code and the response body.
func (a *APIServer) Do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, b, err
}

// Secret is the part of a core/v1 Secret the tests use.
type Secret struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   Meta              `json:"metadata"`
	Data       map[string][]byte `json:"data,omitempty"`
	Type       string            `json:"type,omitempty"`
}

// Meta is object metadata.
type Meta struct {
	Name            string `json:"name"`
	Namespace       string `json:"namespace,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
}

// APIError is a response other than the one expected.
type APIError struct {
	Code int
	Body string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("kube-apiserver answered %d: %s", e.Code, strings.TrimSpace(e.Body[:min(len(e.Body), 600)]))
}

func (a *APIServer) call(ctx context.Context, method, path string, in, out any, want int) error {
	code, body, err := a.Do(ctx, method, path, in)
	if err != nil {
		return err
	}
	if code != want {
		return &APIError{Code: code, Body: string(body)}
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}

// CreateNamespace creates a namespace.
func (a *APIServer) CreateNamespace(ctx context.Context, name string) error {
	ns := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]string{"name": name}}
	return a.call(ctx, "POST", "/api/v1/namespaces", ns, nil, http.StatusCreated)
}

// CreateSecret creates an Opaque secret.
func (a *APIServer) CreateSecret(ctx context.Context, ns, name string, data map[string][]byte) error {
	s := Secret{APIVersion: "v1", Kind: "Secret", Metadata: Meta{Name: name, Namespace: ns}, Data: data, Type: "Opaque"}
	return a.call(ctx, "POST", "/api/v1/namespaces/"+ns+"/secrets", s, nil, http.StatusCreated)
}

// GetSecret reads a secret.
func (a *APIServer) GetSecret(ctx context.Context, ns, name string) (Secret, error) {
	var s Secret
	err := a.call(ctx, "GET", "/api/v1/namespaces/"+ns+"/secrets/"+name, nil, &s, http.StatusOK)
	return s, err
}

// RewriteSecrets reads every secret of ns and writes it back unchanged,
// which stores it under the current key (what 'kubectl get secrets -o json
// | kubectl replace -f -' does). It returns how many it rewrote.
func (a *APIServer) RewriteSecrets(ctx context.Context, ns string) (int, error) {
	// Items are kept whole (labels, annotations, type, immutable...): only
	// the storage changes.
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := a.call(ctx, "GET", "/api/v1/namespaces/"+ns+"/secrets", nil, &list, http.StatusOK); err != nil {
		return 0, err
	}
	for _, s := range list.Items {
		s["apiVersion"], s["kind"] = "v1", "Secret"
		meta, _ := s["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		if err := a.call(ctx, "PUT", "/api/v1/namespaces/"+ns+"/secrets/"+name, s, nil, http.StatusOK); err != nil {
			return 0, fmt.Errorf("rewrite secret %s/%s: %w", ns, name, err)
		}
	}
	return len(list.Items), nil
}

// SecretKey is where kube-apiserver stores a secret in etcd.
func SecretKey(ns, name string) string { return "/registry/secrets/" + ns + "/" + name }
