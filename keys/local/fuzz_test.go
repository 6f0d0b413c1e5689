package local

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
)

// FuzzParseKeyring feeds arbitrary bytes to the parsers and the openers. They
// must not panic; what parseFile accepts must have the structure format 2
// allows (sorted slots found by their locators, sizes from the spec), and
// no opener may accept it under a key that did not write it.
func FuzzParseKeyring(f *testing.F) {
	dir := f.TempDir()
	kf := filepath.Join(dir, "k")
	if err := GenerateKeyFile(kf); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, "keyring")
	if err := Init(f.Context(), InitOptions{Path: path, KeyFile: kf}); err != nil {
		f.Fatal(err)
	}
	empty, _ := os.ReadFile(path)
	p, err := Open(f.Context(), Config{Path: path, KeyFile: kf})
	if err != nil {
		f.Fatal(err)
	}
	p.CreateTenant(f.Context(), "blue")
	p.CreateTenant(f.Context(), "red")
	p.Rotate(f.Context(), "blue")
	p.Shred(f.Context(), "red")
	full, _ := os.ReadFile(path)
	p.Close()
	f.Add(empty)
	f.Add(full)
	f.Add(full[:headerSize])
	f.Add([]byte(magic))
	for _, golden := range []string{"testdata/v1/keyring", "testdata/v2/keyring"} {
		b, err := os.ReadFile(golden)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	var k cryptocore.Key
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := parseFile(data)
		if err != nil {
			if !errors.Is(err, keys.ErrMalformed) && !errors.Is(err, keys.ErrUnknownFormat) {
				t.Fatalf("parseFile error without a sentinel: %v", err)
			}
			return
		}
		if len(raw.hdrBytes) != headerSize {
			t.Fatalf("header of %d bytes", len(raw.hdrBytes))
		}
		// Random keys never authenticate, but the openers must fail cleanly.
		if _, err := openAdmin(data, &k); err == nil {
			t.Fatal("openAdmin accepted a fuzzed keyring under the zero key")
		}
		if _, err := openTenant(data, "blue", &k); err == nil {
			t.Fatal("openTenant accepted a fuzzed keyring under the zero key")
		}
		for _, s := range raw.slots {
			if _, ok := raw.find(s.loc); !ok {
				t.Fatalf("slot %x not found by its locator", s.loc)
			}
		}
		if len(raw.slots) < minSlots || !validSlotPlain(raw.slotPlain) {
			t.Fatalf("accepted %d slots of %d bytes", len(raw.slots), raw.slotPlain)
		}
		_, _, _ = parseAdminBody(data[headerSize:], formatVersion)
		_, _, _ = parseAdminBody(data[headerSize:], 1)
		_, _ = parseSlot("blue", data[headerSize:])
	})
}
