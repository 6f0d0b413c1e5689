package vault

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// A granted token is written once, mode 0600, in the form TokenFile reads,
// and never over an existing file.
func TestTokenWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blue.vault-token")
	tok := Token{Accessor: "acc", Policy: "tencrypt-tenant-blue", secret: "hvs.first"}
	if err := tok.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, fi.Mode())
	}
	r, err := (Config{Addr: "http://127.0.0.1:8200", TokenFile: path}).resolve(func(string) string { return "" })
	if err != nil || r.token != "hvs.first" {
		t.Fatalf("the written file does not read back as the token: %v", err)
	}
	other := Token{secret: "hvs.second"}
	if err := other.WriteFile(path); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("WriteFile over an existing file: %v, want fs.ErrExist", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "hvs.first\n" {
		t.Fatalf("an existing token file was changed: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
