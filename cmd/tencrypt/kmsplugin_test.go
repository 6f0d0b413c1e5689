package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
)

// TestKMSPluginCLI runs 'tencrypt kms-plugin' on a local keyring and talks
// KMS v2 to it over its socket, as kube-apiserver would.
func TestKMSPluginCLI(t *testing.T) {
	e := newKeysEnv(t)
	e.ok("keys", "init")
	e.ok("keys", "create", "cluster-etcd")
	e.want(exitcodes.Usage, "kms-plugin")
	e.want(exitcodes.Usage, "kms-plugin", "--listen", "tcp://127.0.0.1:1")
	e.want(exitcodes.Usage, "kms-plugin", "--listen", "unix://"+filepath.Join(e.dir, "x.sock"), "--key", "Not_A_Key")

	sock := filepath.Join(e.dir, "kms.sock")
	s := e.start("kms-plugin", "--listen", "unix://"+sock)
	cmd, stderr, exited := s.cmd, &s.stderr, s.exited

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := kmsapi.NewKeyManagementServiceClient(conn)
	var st *kmsapi.StatusResponse
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, err = c.Status(t.Context(), &kmsapi.StatusRequest{}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the plugin never answered Status: %v\n%s", err, stderr.String())
		}
	}
	if st.Healthz != "ok" || !strings.HasPrefix(st.KeyId, "tencrypt:1:local:cluster-etcd:") || !strings.HasSuffix(st.KeyId, ":1") {
		t.Fatalf("status: %+v", st)
	}
	e.ok("keys", "rotate", "cluster-etcd")
	if st, err = c.Status(t.Context(), &kmsapi.StatusRequest{}); err != nil || !strings.HasSuffix(st.KeyId, ":2") {
		t.Fatalf("status after rotation: %+v, %v", st, err)
	}
	seed := bytes.Repeat([]byte{3}, 32)
	enc, err := c.Encrypt(t.Context(), &kmsapi.EncryptRequest{Plaintext: append([]byte(nil), seed...), Uid: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := c.Decrypt(t.Context(), &kmsapi.DecryptRequest{Ciphertext: enc.Ciphertext, KeyId: enc.KeyId, Uid: "cli"})
	if err != nil || !bytes.Equal(dec.Plaintext, seed) {
		t.Fatalf("decrypt: %v", err)
	}
	// SIGTERM stops it cleanly and removes the socket.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := <-exited; err != nil {
		t.Fatalf("kms-plugin after SIGTERM: %v\n%s", err, stderr.String())
	}
	if _, err := exec.Command("test", "-S", sock).CombinedOutput(); err == nil {
		t.Fatal("the socket is still there after the plugin stopped")
	}
	// The audit log recorded the unwrap.
	if out := e.ok("keys", "audit"); !strings.Contains(out, "cluster-etcd") {
		t.Fatalf("keys audit shows no unwrap of cluster-etcd:\n%s", out)
	}
}
