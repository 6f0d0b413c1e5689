package keys_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
)

func sampleBlob(t testing.TB) []byte {
	wk := keys.WrappedKey{Provider: "local", Tenant: "blue", Purpose: "file", KEKVersion: 7, Ciphertext: bytes.Repeat([]byte{0xAB}, 60)}
	b, err := wk.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWrappedKeyGolden pins the byte layout of docs/WRAPPED-KEY.md.
func TestWrappedKeyGolden(t *testing.T) {
	b := sampleBlob(t)
	want := "54435759" + "01" + "05" + hex.EncodeToString([]byte("local")) + "04" + hex.EncodeToString([]byte("blue")) +
		"04" + hex.EncodeToString([]byte("file")) + "00000007" + "003c" + strings.Repeat("ab", 60)
	want = strings.Replace(want, "54435759", hex.EncodeToString([]byte("TCWK")), 1)
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("blob\n got %s\nwant %s", got, want)
	}
	if len(b) != 87 {
		t.Fatalf("blob is %d bytes; docs/WRAPPED-KEY.md says 87", len(b))
	}
}

func TestWrappedKeyStrictParse(t *testing.T) {
	good := sampleBlob(t)
	with := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, keys.ErrMalformed},
		{"wrong magic", with(0, 'X'), keys.ErrMalformed},
		{"magic only", good[:4], keys.ErrMalformed},
		{"unknown version", with(4, 2), keys.ErrUnknownFormat},
		{"zero-length provider", with(5, 0), keys.ErrMalformed},
		{"oversize provider", with(5, 17), keys.ErrMalformed},
		{"provider past the end", with(5, 255), keys.ErrMalformed},
		{"truncated in the tenant", good[:13], keys.ErrMalformed},
		{"truncated before version", good[:22], keys.ErrMalformed},
		{"truncated in the ciphertext", good[:len(good)-1], keys.ErrMalformed},
		{"trailing byte", append(bytes.Clone(good), 0), keys.ErrMalformed},
		{"version 0", func() []byte { b := bytes.Clone(good); copy(b[21:25], []byte{0, 0, 0, 0}); return b }(), keys.ErrMalformed},
		{"upper-case tenant", with(12, 'B'), keys.ErrMalformed},
		{"oversize", make([]byte, keys.MaxWrappedKeySize+1), keys.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wk keys.WrappedKey
			err := wk.UnmarshalBinary(tt.b)
			if !errors.Is(err, tt.want) {
				t.Fatalf("UnmarshalBinary: %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWrappedKeyMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		wk   keys.WrappedKey
	}{
		{"no provider", keys.WrappedKey{Tenant: "b", Purpose: "p", KEKVersion: 1, Ciphertext: []byte{1}}},
		{"long provider", keys.WrappedKey{Provider: strings.Repeat("a", 17), Tenant: "b", Purpose: "p", KEKVersion: 1, Ciphertext: []byte{1}}},
		{"bad purpose", keys.WrappedKey{Provider: "local", Tenant: "b", Purpose: "File", KEKVersion: 1, Ciphertext: []byte{1}}},
		{"no ciphertext", keys.WrappedKey{Provider: "local", Tenant: "b", Purpose: "p", KEKVersion: 1}},
		{"huge ciphertext", keys.WrappedKey{Provider: "local", Tenant: "b", Purpose: "p", KEKVersion: 1, Ciphertext: make([]byte, keys.MaxWrappedCiphertext+1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.wk.MarshalBinary(); !errors.Is(err, keys.ErrMalformed) {
				t.Fatalf("MarshalBinary: %v, want ErrMalformed", err)
			}
		})
	}
}

// FuzzUnwrapBlob parses arbitrary blobs and unwraps what parses. Parsing
// must round-trip exactly, and no fuzzed blob may unwrap.
func FuzzUnwrapBlob(f *testing.F) {
	m := keystest.NewMemory("memory", clock)
	m.Admin().CreateTenant(f.Context(), "blue")
	audit := &keystest.AuditLog{}
	env := keys.NewEnvelope(m.Admin(), audit, clock)
	dek, wk, err := env.NewDEK(f.Context(), "blue", "file")
	if err != nil {
		f.Fatal(err)
	}
	dek.Zero()
	real, _ := wk.MarshalBinary()
	f.Add(real)
	f.Add(sampleBlob(f))
	f.Add([]byte("TCWK\x01"))
	f.Add([]byte("TCWK\x02\x05local"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var wk keys.WrappedKey
		if err := wk.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, keys.ErrMalformed) && !errors.Is(err, keys.ErrUnknownFormat) {
				t.Fatalf("parse error without a sentinel: %v", err)
			}
			return
		}
		again, err := wk.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("round trip: %v", err)
		}
		if bytes.Equal(b, real) {
			return
		}
		if _, err := env.Unwrap(t.Context(), wk, wk.Purpose, "fuzz"); err == nil {
			t.Fatalf("a fuzzed blob unwrapped: %x", b)
		}
	})
}
