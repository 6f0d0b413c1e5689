package keys

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"testing"
)

// FuzzFindEmbedded: the search of files of unknown kind never panics;
// every key it returns is valid; and a blob it is given in any of its
// encodings, after arbitrary bytes, is found (unless those bytes hold a
// magic that does not parse, which is then an error).
func FuzzFindEmbedded(f *testing.F) {
	wk := WrappedKey{Provider: "local", Tenant: "blue", Purpose: "file", KEKVersion: 7, Ciphertext: bytes.Repeat([]byte{0xab}, 60)}
	blob, _ := wk.MarshalBinary()
	f.Add([]byte("name_key: "), uint8(0))
	f.Add([]byte("TCWK\x01"), uint8(1))
	f.Add([]byte("VENXSw"), uint8(2))
	f.Add([]byte("5443574b01"), uint8(3))
	f.Fuzz(func(t *testing.T, prefix []byte, enc uint8) {
		var embedded []byte
		switch enc % 4 {
		case 0:
			embedded = blob
		case 1:
			embedded = []byte(base64.StdEncoding.EncodeToString(blob))
		case 2:
			embedded = []byte(base64.RawURLEncoding.EncodeToString(blob))
		case 3:
			embedded = []byte(hex.EncodeToString(blob))
		}
		data := append(append(bytes.Clone(prefix), ' '), embedded...)
		data = append(data, '"')
		for i, in := range [][]byte{prefix, data} {
			wks, err := findEmbedded("fuzz", in)
			for _, k := range wks {
				if err := k.Validate(); err != nil {
					t.Fatalf("returned an invalid key: %v", err)
				}
			}
			if err != nil || i == 0 {
				continue
			}
			found := false
			for _, k := range wks {
				found = found || (k.Tenant == wk.Tenant && k.KEKVersion == wk.KEKVersion && bytes.Equal(k.Ciphertext, wk.Ciphertext))
			}
			if !found {
				t.Fatalf("the embedded blob (encoding %d) was not found in %q", enc%4, data)
			}
		}
	})
}
