package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
)

// A format 1 keyring is refused with exit 10 and a pointer to keys migrate;
// after the migration admin and tenant commands work on it again.
func TestKeysMigrateCLI(t *testing.T) {
	e := newKeysEnv(t)
	src := filepath.Join("..", "..", "keys", "local", "testdata", "v1")
	for _, f := range []string{"keyring", "admin.key", "access/blue.key"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(e.dir, f)), 0o700)
		if err := os.WriteFile(filepath.Join(e.dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tenant := []string{"--local-key-file", "", "--local-tenant", "blue", "--local-tenant-key-file", filepath.Join(e.dir, "access", "blue.key")}
	if stderr := e.want(exitcodes.UnknownFormat, "keys", "list"); !strings.Contains(stderr, "keys migrate") {
		t.Fatalf("keys list on a format 1 keyring: %s, want a pointer to keys migrate", stderr)
	}
	e.want(exitcodes.UnknownFormat, append([]string{"keys", "list"}, tenant...)...)
	e.want(exitcodes.PermissionDenied, append([]string{"keys", "migrate"}, tenant...)...)
	if out := e.ok("keys", "migrate", "--json"); !strings.Contains(out, `"from_format": 1`) {
		t.Fatalf("keys migrate --json: %s", out)
	}
	if out := e.ok("keys", "list"); !strings.Contains(out, "blue") || !strings.Contains(out, "red") {
		t.Fatalf("keys list after migrate: %s", out)
	}
	e.ok(append([]string{"keys", "list"}, tenant...)...)
	if out := e.ok("keys", "migrate"); !strings.Contains(out, "already in format 2") {
		t.Fatalf("second keys migrate: %s", out)
	}
}
