package cryptocore

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// These vectors pin the file format's labels: they must not change,
// because that would change the on-disk format (docs/FORMAT.md). They were
// cross-checked with an independent HKDF (Python hmac/hashlib).
func TestFileLabelsPinned(t *testing.T) {
	var secret Key
	for i := range secret {
		secret[i] = byte(i)
	}
	salt := []byte("0123456789abcdef") // a file ID
	tests := []struct{ label, want string }{
		{LabelFileContent, "fd6e3cddb96d389c40cee1e35704074a9eb05c562fcd60e26dba322ac316b072"},
		{LabelFileHeader, "3c9ea5c7e2bd473a43d01f60c7013a91daced65e866aa81f90334c3fb969365c"},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			k := DeriveKey(&secret, salt, tt.label)
			if got := hex.EncodeToString(k[:]); got != tt.want {
				t.Errorf("DeriveKey(%q) = %s, want %s", tt.label, got, tt.want)
			}
		})
	}
}

func TestBlockAEAD(t *testing.T) {
	k := NewRandomKey()
	defer k.Zero()
	a, err := NewBlockAESGCM(&k, nil)
	if err != nil {
		t.Fatal(err)
	}
	pt, ad := bytes.Repeat([]byte("block"), 800), []byte("ad")
	prefix := []byte("prefix")
	s, err := a.SealBlock(bytes.Clone(prefix), pt, ad)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(s, prefix) || len(s) != len(prefix)+len(pt)+BlockOverhead {
		t.Fatalf("SealBlock appended %d bytes, want %d", len(s)-len(prefix), len(pt)+BlockOverhead)
	}
	s = s[len(prefix):]
	if s2, _ := a.SealBlock(nil, pt, ad); bytes.Equal(s[:BlockNonceSize], s2[:BlockNonceSize]) {
		t.Fatal("two seals share a nonce")
	}
	if out, err := a.OpenBlock(nil, s, ad); err != nil || !bytes.Equal(out, pt) {
		t.Fatalf("open: %v", err)
	}
	for _, i := range []int{0, 11, 12, 500, len(s) - 16, len(s) - 1} {
		bad := bytes.Clone(s)
		bad[i] ^= 1
		if out, err := a.OpenBlock(nil, bad, ad); !errors.Is(err, ErrAuth) || out != nil {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := a.OpenBlock(nil, s, []byte("other")); !errors.Is(err, ErrAuth) {
		t.Fatalf("other ad: %v", err)
	}
	// An all-zero nonce is refused even if the rest authenticates: sealed
	// here through an injected source that yields zeros.
	z, _ := NewBlockAESGCM(&k, bytes.NewReader(make([]byte, BlockNonceSize)))
	zs, err := z.SealBlock(nil, pt, ad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.OpenBlock(nil, zs, ad); !errors.Is(err, ErrAuth) {
		t.Fatalf("all-zero nonce: %v", err)
	}
	// A failing injected source fails the seal and appends nothing.
	if out, err := z.SealBlock([]byte("x"), pt, ad); err == nil || string(out) != "x" {
		t.Fatalf("exhausted nonce source: %q, %v", out, err)
	}
	if _, err := a.OpenBlock(nil, make([]byte, BlockOverhead-1), ad); !errors.Is(err, ErrAuth) {
		t.Fatalf("short block: %v", err)
	}
}

func TestGCMBaseline(t *testing.T) {
	b := NewGCMBaseline(4096)
	b.Seal()
	if err := b.Open(); err != nil {
		t.Fatal(err)
	}
}
