package cryptocore

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestEMEKnownAnswer pins EME-AES-256 as used for names: a change here
// changes every encrypted name on disk.
func TestEMEKnownAnswer(t *testing.T) {
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	e, err := NewEME(&k)
	if err != nil {
		t.Fatal(err)
	}
	tweak := bytes.Repeat([]byte{0xAA}, EMETweakSize)
	pt := []byte("hello.txt\x07\x07\x07\x07\x07\x07\x07")
	ct, err := e.Encrypt(tweak, pt)
	if err != nil {
		t.Fatal(err)
	}
	const want = "cee0cfde09e9509e212108814a911fba"
	if got := hex.EncodeToString(ct); got != want {
		t.Errorf("EME known answer changed: got %s, want %s", got, want)
	}
	back, err := e.Decrypt(tweak, ct)
	if err != nil || !bytes.Equal(back, pt) {
		t.Fatalf("decrypt: %q, %v", back, err)
	}
	other := bytes.Repeat([]byte{0xAB}, EMETweakSize)
	if ct2, _ := e.Encrypt(other, pt); bytes.Equal(ct2, ct) {
		t.Error("another tweak gave the same ciphertext")
	}
}

func TestEMERejectsBadLengths(t *testing.T) {
	var k Key
	e, err := NewEME(&k)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		tweak int
		data  int
	}{
		{"empty", 16, 0},
		{"not a block multiple", 16, 17},
		{"too long", 16, EMEMaxSize + 16},
		{"short tweak", 8, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.Encrypt(make([]byte, tt.tweak), make([]byte, tt.data)); err == nil {
				t.Error("Encrypt accepted it")
			}
			if _, err := e.Decrypt(make([]byte, tt.tweak), make([]byte, tt.data)); err == nil {
				t.Error("Decrypt accepted it")
			}
		})
	}
}
