package fscrypt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

func sampleMetadata(tb testing.TB) []byte {
	m := Metadata{ContentsMode: ContentsMode, FilenamesMode: FilenamesMode, Flags: PolicyFlags,
		Key: keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: Purpose, KEKVersion: 1, Ciphertext: bytes.Repeat([]byte{7}, 60)}}
	m.ID[0], m.Identifier[15] = 1, 2
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzParseMetadata: the parser never panics, every error wraps
// ErrBadMetadata, and what it accepts is canonical (re-encodes to the same
// bytes) and has our policy and purpose.
func FuzzParseMetadata(f *testing.F) {
	good := sampleMetadata(f)
	f.Add(good)
	f.Add(good[:fixedSize])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMetadata(b)
		if err != nil {
			if !errors.Is(err, ErrBadMetadata) {
				t.Fatalf("error %v does not wrap ErrBadMetadata", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("accepted input does not re-encode to itself: %v", err)
		}
		if m.Key.Purpose != Purpose || m.ContentsMode != ContentsMode || !IsMetadata(b) {
			t.Fatalf("accepted %+v", m)
		}
	})
}

func TestParseMetadataRoundTrip(t *testing.T) {
	b := sampleMetadata(t)
	m, err := ParseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.Key.Tenant != "blue" || m.ID[0] != 1 || m.Identifier[15] != 2 {
		t.Fatalf("round trip: %+v", m)
	}
	wrong := *m
	wrong.Key.Purpose = "app"
	wb, _ := wrong.MarshalBinary()
	if _, err := ParseMetadata(wb); !errors.Is(err, ErrBadMetadata) {
		t.Fatalf("a key for another purpose: %v", err)
	}
}

// TestHolderFailsClosed: a file with the magic that does not parse stops
// a scan (a retire must not run past a key it could not read), under any
// name; a good one yields its key at KeyOffset.
func TestHolderFailsClosed(t *testing.T) {
	dir := t.TempDir()
	good := sampleMetadata(t)
	os.WriteFile(filepath.Join(dir, "backup.bin"), good, 0o600)
	res, err := keys.Scan(t.Context(), []string{dir}, []keys.Holder{Holder{}})
	if err != nil || len(res.Keys) != 1 || res.Keys[0].Kind != "fscrypt-volume" || res.Keys[0].Offset == nil || *res.Keys[0].Offset != fixedSize {
		t.Fatalf("scan of a metadata copy: %+v, %v", res, err)
	}
	os.WriteFile(filepath.Join(dir, MetadataFile), good[:fixedSize+3], 0o600)
	if _, err := keys.Scan(t.Context(), []string{dir}, []keys.Holder{Holder{}}); !errors.Is(err, ErrBadMetadata) {
		t.Fatalf("scan with truncated metadata: %v, want ErrBadMetadata", err)
	}
}

// TestMetadataGolden pins the encoding of version 1 (docs/FSCRYPT.md): it
// must not change, or existing volumes stop parsing.
func TestMetadataGolden(t *testing.T) {
	golden := "54465356" + "01" + "01" + "04" + "03" + // magic, version, modes, flags
		"01000000000000000000000000000000" + // volume ID
		"00000000000000000000000000000002" + // key identifier
		"0059" + // wrapped key length: 89
		"5443574b01056c6f63616c04626c756506766f6c756d6500000001003c" + strings.Repeat("07", 60)
	b := sampleMetadata(t)
	if got := hex.EncodeToString(b); got != golden {
		t.Fatalf("encoding changed:\n got %s\nwant %s", got, golden)
	}
	if len(b) != 131 {
		t.Fatalf("%d bytes, docs/FSCRYPT.md says 131", len(b))
	}
}
