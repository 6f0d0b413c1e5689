package cryptocore

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

func testNameAE(t *testing.T) *NameAE {
	t.Helper()
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	a, err := NewNameAE(&k)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestNameAEKnownAnswer pins NameAE: EME-AES-256 of the input followed by
// 16 zero bytes. A change here changes every encrypted name on disk. The
// first block differs from TestEMEKnownAnswer's because EME mixes every
// block into every other.
func TestNameAEKnownAnswer(t *testing.T) {
	a := testNameAE(t)
	tweak := bytes.Repeat([]byte{0xAA}, EMETweakSize)
	in := []byte("hello.txt\x07\x07\x07\x07\x07\x07\x07")
	ct, err := a.Seal(tweak, in)
	if err != nil {
		t.Fatal(err)
	}
	const want = "126a33b4f9ae5110efa48931d10deaeb5db2276429c824a3af79b761a924a78e"
	if got := hex.EncodeToString(ct); got != want {
		t.Errorf("NameAE known answer changed: got %s, want %s", got, want)
	}
	// The same as EME over in ‖ 0^16: no other step.
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	e, _ := NewEME(&k)
	direct, _ := e.Encrypt(tweak, append(bytes.Clone(in), make([]byte, 16)...))
	if !bytes.Equal(direct, ct) {
		t.Error("NameAE is not EME over the input and a zero block")
	}
	back, err := a.Open(tweak, ct)
	if err != nil || !bytes.Equal(back, in) {
		t.Fatalf("Open: %q, %v", back, err)
	}
}

func TestNameAERejects(t *testing.T) {
	a := testNameAE(t)
	tweak := bytes.Repeat([]byte{1}, EMETweakSize)
	in := bytes.Repeat([]byte("n"), 48)
	ct, err := a.Seal(tweak, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != len(in)+NameAERedundancy {
		t.Fatalf("sealed %d bytes, want %d", len(ct), len(in)+NameAERedundancy)
	}
	for i := range ct {
		bad := bytes.Clone(ct)
		bad[i] ^= 0x01
		if out, err := a.Open(tweak, bad); !errors.Is(err, ErrAuth) || out != nil {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	other := bytes.Repeat([]byte{2}, EMETweakSize)
	if _, err := a.Open(other, ct); !errors.Is(err, ErrAuth) {
		t.Fatalf("another tweak (directory): %v", err)
	}
	for _, n := range []int{0, 15, 16, 17, len(ct) - 16, len(ct) + 1, EMEMaxSize + 16} {
		if _, err := a.Open(tweak, make([]byte, n)); !errors.Is(err, ErrAuth) {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	if _, err := a.Open(make([]byte, 8), ct); !errors.Is(err, ErrAuth) {
		t.Error("short tweak accepted")
	}
	for _, n := range []int{0, 15, NameAEMaxInput + 16} {
		if _, err := a.Seal(tweak, make([]byte, n)); err == nil {
			t.Errorf("Seal of %d bytes accepted", n)
		}
	}
	if _, err := a.Seal(tweak, make([]byte, NameAEMaxInput)); err != nil {
		t.Errorf("Seal of the longest input: %v", err)
	}
}
