package kubetest

import (
	"bytes"
	"strings"
	"testing"
)

func TestBinaryMissingNamesTheBuildScript(t *testing.T) {
	t.Setenv("TENCRYPT_CACHE", t.TempDir())
	_, err := Binary("kube-apiserver")
	if err == nil || !strings.Contains(err.Error(), "scripts/build-kube") {
		t.Fatalf("Binary with an empty cache: %v, want an error naming scripts/build-kube", err)
	}
}

func TestEtcdRawValues(t *testing.T) {
	e := StartEtcd(t)
	v := []byte("k8s:enc:kms:v2:x:\x00\x01\xff")
	if err := e.Put(t.Context(), "/registry/secrets/ns/a", v); err != nil {
		t.Fatal(err)
	}
	got, err := e.Get(t.Context(), "/registry/secrets/ns/a")
	if err != nil || !bytes.Equal(got, v) {
		t.Fatalf("raw value round trip: %q, %v", got, err)
	}
	if got, err := e.Get(t.Context(), "/registry/secrets/ns/none"); err != nil || got != nil {
		t.Fatalf("missing key: %q, %v", got, err)
	}
}
