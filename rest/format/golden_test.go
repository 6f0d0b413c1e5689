package format

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata (only for a new format version)")

// counterReader yields 1, 2, 3, ... 255, 1, 2, ...: a fixed, never-zero
// stand-in for the CSPRNG in known-answer tests.
type counterReader struct{ n byte }

func (c *counterReader) Read(p []byte) (int, error) {
	for i := range p {
		c.n = c.n%255 + 1
		p[i] = c.n
	}
	return len(p), nil
}

// goldenKey is the fixed DEK and wrapped key of the golden files. The
// wrapped ciphertext is filler: the golden unwrap returns the DEK for this
// exact blob and fails for any other.
func goldenKey() (keys.DEK, keys.WrappedKey) {
	var dek keys.DEK
	for i := range dek {
		dek[i] = byte(i)
	}
	return dek, keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: Purpose, KEKVersion: 1, Ciphertext: bytes.Repeat([]byte{0xc7}, 60)}
}

func goldenUnwrap(wk keys.WrappedKey) (keys.DEK, error) {
	dek, want := goldenKey()
	a, _ := wk.MarshalBinary()
	b, _ := want.MarshalBinary()
	if !bytes.Equal(a, b) {
		return keys.DEK{}, keys.ErrAuth
	}
	return dek, nil
}

// goldenPlaintext is byte i = i mod 251.
func goldenPlaintext(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// TestGoldenV1 pins the v1 format with known answers: a fixed DEK, a fixed
// nonce and file-ID source, and the plaintext sizes of docs/FORMAT.md's
// worked examples. These files and hashes must not change, because that
// would change the on-disk format: files written by earlier releases would
// no longer read. Only a new format version adds new ones.
func TestGoldenV1(t *testing.T) {
	tests := []struct {
		size     int
		fileSize int64 // docs/FORMAT.md, worked sizes
		sha256   string
	}{
		{0, 171, "eec683b09682a4781288ccfcf3e6f4bf9aba65b492fbe6df34eba6804fde9ac4"},
		{1, 172, "a7c20d626f8aaeec8d618f8e4d1c2ec5e18bb4d04767fe85ae7953801531a1e9"},
		{4096, 4267, "37eeef216e5b91ebee20e0a90ac03faeb936e55a4b2c940ffbb64a50ca95c87f"},
		{4097, 4296, "39752c6e573251d878a80559d8f240eecb4c9117caad89cadb3b7f59f414d80d"},
		{5000, 5199, "8e202382ad8ca8a1bf9cc9a9a5b11dfaead46664e8d1641377142c2f03ef48c5"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			dek, wk := goldenKey()
			pt := goldenPlaintext(tt.size)
			got := encryptWith(t, &dek, wk, pt, 0, withRandom(&counterReader{}))
			path := filepath.Join("testdata", fmt.Sprintf("golden-v1-%d.tenc", tt.size))
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestGoldenV1 -update once to create it)", err)
			}
			sum := sha256.Sum256(want)
			t.Logf("%s: %d bytes, sha256 %s", path, len(want), hex.EncodeToString(sum[:]))
			if int64(len(want)) != tt.fileSize {
				t.Errorf("golden file is %d bytes, the spec says %d", len(want), tt.fileSize)
			}
			if hex.EncodeToString(sum[:]) != tt.sha256 {
				t.Errorf("golden file sha256 %x, pinned %s", sum, tt.sha256)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encryption with fixed inputs differs from %s: the on-disk format changed", path)
			}
			r, err := NewReader(bytes.NewReader(want), goldenUnwrap)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(back, pt) {
				t.Fatalf("decrypt %s: %v", path, err)
			}
		})
	}
}

func TestParseHeader(t *testing.T) {
	dek, wk := goldenKey()
	ct := encryptWith(t, &dek, wk, nil, 0, withRandom(&counterReader{}))
	good := ct[:len(ct)-BlockOverhead]
	if _, err := ParseHeader(good); err != nil {
		t.Fatalf("good header: %v", err)
	}
	set := func(i int, v ...byte) []byte { b := bytes.Clone(good); copy(b[i:], v); return b }
	otherPurpose := wk
	otherPurpose.Purpose = "volume"
	ctOther := encryptWithHeaderKey(t, otherPurpose)
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrNotTencrypt},
		{"short magic", []byte("TEN"), ErrNotTencrypt},
		{"wrong magic", set(0, 'T', 'E', 'N', 'D'), ErrNotTencrypt},
		{"magic only", []byte(Magic), ErrMalformed},
		{"version 0", set(4, 0), ErrUnknownVersion},
		{"version 2", set(4, 2), ErrUnknownVersion},
		{"suite 0", set(5, 0), ErrUnknownVersion},
		{"suite 2", set(5, 2), ErrUnknownVersion},
		{"fixed part cut", good[:fixedSize-1], ErrMalformed},
		{"block size 8192", set(6, 0, 0, 0x20, 0), ErrMalformed},
		{"zero file ID", set(10, make([]byte, FileIDSize)...), ErrMalformed},
		{"zero wrapped key length", set(26, 0, 0), ErrMalformed},
		{"oversize wrapped key", set(26, 0xff, 0xff), ErrMalformed},
		{"one byte short", good[:len(good)-1], ErrMalformed},
		{"one byte long", append(bytes.Clone(good), 0), ErrMalformed},
		{"whole file", ct, ErrMalformed},
		{"wrapped key not a blob", set(fixedSize, 'X'), ErrMalformed},
		{"wrapped key for another purpose", ctOther, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.b)
			if !errors.Is(err, tt.want) || h != nil {
				t.Fatalf("got %v, %v; want %v", h, err, tt.want)
			}
			if _, err := ReadHeader(bytes.NewReader(tt.b)); err == nil && tt.name != "one byte long" && tt.name != "whole file" {
				t.Fatalf("ReadHeader accepted it")
			}
		})
	}
}

// encryptWithHeaderKey builds a header naming wk without NewWriter's
// purpose check, as a forger would.
func encryptWithHeaderKey(t *testing.T, wk keys.WrappedKey) []byte {
	t.Helper()
	var id [FileIDSize]byte
	id[0] = 1
	h, err := newHeader(id, wk)
	if err != nil {
		t.Fatal(err)
	}
	return h.Bytes()
}

// TestHolderKeyOffset: the offset Holder reports for a file's wrapped key
// (keys retire --json) is where the key's blob starts in the file.
func TestHolderKeyOffset(t *testing.T) {
	var _ keys.KeyOffsetHolder = Holder{}
	for _, g := range goldenFiles(t) {
		h, err := ReadHeader(bytes.NewReader(g))
		if err != nil {
			t.Fatal(err)
		}
		blob, err := h.Key.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		off := Holder{}.KeyOffset()
		if !bytes.Equal(g[off:off+int64(len(blob))], blob) {
			t.Fatalf("the wrapped key is not at offset %d", off)
		}
	}
}
