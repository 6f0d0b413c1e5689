package kmsplugin_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/kmsplugin"
)

func TestKeyIDGolden(t *testing.T) {
	// Must not change: kube-apiserver stores key_ids in etcd.
	id := kmsplugin.KeyID{Backend: "vault", Key: "cluster-etcd", Created: 1764671234, Version: 12}
	const want = "tencrypt:1:vault:cluster-etcd:1764671234:12"
	if id.String() != want {
		t.Fatalf("key_id %q, want %q", id, want)
	}
	back, err := kmsplugin.ParseKeyID(want)
	if err != nil || back != id {
		t.Fatalf("ParseKeyID(%q) = %+v, %v", want, back, err)
	}
	longest := kmsplugin.KeyID{Backend: strings.Repeat("b", keys.MaxProviderName), Key: strings.Repeat("k", 63), Created: 1<<63 - 1, Version: 1<<32 - 1}
	if n := len(longest.String()); n > kmsplugin.MaxKeyIDSize {
		t.Fatalf("longest key_id is %d bytes", n)
	}
}

func TestKeyIDStrict(t *testing.T) {
	for _, s := range []string{
		"", "tencrypt:1:", "tencrypt:2:local:k:1:1", "tencrypt:1:local:k:1", "tencrypt:1:local:k:1:1:1",
		"tencrypt:1:local:k:01:1", "tencrypt:1:local:k:1:01", "tencrypt:1:local:k:1:0", "tencrypt:1:local:k:-1:1",
		"tencrypt:1:local:k:+1:1", "tencrypt:1:local:k: 1:1", "tencrypt:1:Local:k:1:1", "tencrypt:1:local:K:1:1",
		"tencrypt:1:local:k:1:4294967296", "tencrypt:1:local:k:9223372036854775808:1", "tencrypt:1::k:1:1",
		"tencrypt:1:averyveryverylongbackend:k:1:1", "tencrypt:1:local:k:1:1\n",
		"tencrypt:1:local:" + strings.Repeat("k", 2000) + ":1:1",
	} {
		if _, err := kmsplugin.ParseKeyID(s); !errors.Is(err, kmsplugin.ErrBadKeyID) {
			t.Errorf("ParseKeyID(%q): %v, want ErrBadKeyID", s, err)
		}
	}
}

// FuzzParseKeyID: whatever parses has exactly one spelling.
func FuzzParseKeyID(f *testing.F) {
	f.Add("tencrypt:1:local:cluster-etcd:1764671234:3")
	f.Add("tencrypt:1:vault:k:0:1")
	f.Add("tencrypt:1:local:k:01:1")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := kmsplugin.ParseKeyID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("%q parsed to %+v, which encodes as %q", s, id, id.String())
		}
	})
}

// FuzzParseCiphertext: whatever is accepted is a blob for the plugin whose
// fields match the key_id, and re-encodes to the same bytes.
func FuzzParseCiphertext(f *testing.F) {
	wk := keys.WrappedKey{Provider: "local", Tenant: "cluster-etcd", Purpose: kmsplugin.Purpose, KEKVersion: 3, Ciphertext: bytes.Repeat([]byte{7}, 60)}
	blob, _ := wk.MarshalBinary()
	id := kmsplugin.KeyID{Backend: "local", Key: "cluster-etcd", Created: 5, Version: 3}.String()
	f.Add(blob, id)
	f.Add(blob[:len(blob)-1], id)
	f.Add([]byte("TCWK\x01"), "tencrypt:1:local:cluster-etcd:5:3")
	f.Fuzz(func(t *testing.T, ct []byte, keyID string) {
		got, err := kmsplugin.ParseCiphertext(ct, keyID, nil)
		if err != nil {
			return
		}
		id, err := kmsplugin.ParseKeyID(keyID)
		if err != nil {
			t.Fatalf("accepted with a bad key_id %q", keyID)
		}
		if got.Provider != id.Backend || got.Tenant != id.Key || got.KEKVersion != id.Version || got.Purpose != kmsplugin.Purpose {
			t.Fatalf("accepted %v with key_id %q", got, keyID)
		}
		again, err := got.MarshalBinary()
		if err != nil || !bytes.Equal(again, ct) {
			t.Fatalf("accepted a blob that does not re-encode to itself")
		}
		if len(ct) > kmsplugin.MaxCiphertextSize {
			t.Fatalf("accepted %d bytes", len(ct))
		}
	})
}
