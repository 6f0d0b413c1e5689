package vault

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseCiphertext(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		version uint32
		ok      bool
	}{
		{"v1", "vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1, true},
		{"v42", "vault:v42:AAAA", 42, true},
		{"max uint32", "vault:v4294967295:AAAA", 4294967295, true},
		{"over uint32", "vault:v4294967296:AAAA", 0, false},
		{"version zero", "vault:v0:AAAA", 0, false},
		{"leading zero", "vault:v01:AAAA", 0, false},
		{"negative", "vault:v-1:AAAA", 0, false},
		{"plus sign", "vault:v+1:AAAA", 0, false},
		{"no version", "vault:v:AAAA", 0, false},
		{"no body", "vault:v1:", 0, false},
		{"no colon", "vault:v1AAAA", 0, false},
		{"bad base64", "vault:v1:AA*A", 0, false},
		{"unpadded base64", "vault:v1:AAA", 0, false},
		{"extra field", "vault:v1:AAAA:AAAA", 0, false},
		{"other prefix", "vaulx:v1:AAAA", 0, false},
		{"empty", "", 0, false},
		{"too long", "vault:v1:" + strings.Repeat("A", maxCiphertext), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := parseCiphertext([]byte(tt.in))
			if ok != tt.ok || v != tt.version {
				t.Fatalf("parseCiphertext(%q) = %d, %v; want %d, %v", tt.in, v, ok, tt.version, tt.ok)
			}
		})
	}
}

// FuzzParseCiphertext checks that whatever parses round-trips to the same
// prefix and that nothing panics.
func FuzzParseCiphertext(f *testing.F) {
	for _, s := range []string{"vault:v1:AAAA", "vault:v7:" + strings.Repeat("QUJD", 20), "vault:v0:AAAA", "vault:v1:", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, ct []byte) {
		v, ok := parseCiphertext(ct)
		if !ok {
			return
		}
		if v == 0 || len(ct) > maxCiphertext {
			t.Fatalf("accepted %q as version %d", ct, v)
		}
		if want := ciphertextPrefix + strconv.FormatUint(uint64(v), 10) + ":"; !strings.HasPrefix(string(ct), want) {
			t.Fatalf("accepted %q as version %d", ct, v)
		}
	})
}
