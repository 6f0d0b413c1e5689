package backend_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys/backend"
)

func TestOpenUnknownBackend(t *testing.T) {
	_, err := backend.Open(t.Context(), backend.Config{Backend: "nosuch"})
	if !errors.Is(err, backend.ErrUnknownBackend) {
		t.Fatalf("Open(nosuch): %v, want ErrUnknownBackend", err)
	}
	for _, n := range backend.Names() {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("error %q does not list valid backend %q", err, n)
		}
	}
}

func TestOpenLocalNeedsPath(t *testing.T) {
	_, err := backend.Open(t.Context(), backend.Config{Backend: "local"})
	if err == nil || !strings.Contains(err.Error(), "path") {
		t.Fatalf("Open(local) without a path: %v, want an error naming the missing path", err)
	}
}

// Load reads the file, then the environment, then the flags, each beating
// the one before; secrets have no flag and no file name; a bad value is an
// ErrConfig naming where it came from.
func TestLoadPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(file, []byte("audit_log: /file/audit\nlocal:\n  path: /file/keyring\n  key_file: /file/key\n  tenant: fromfile\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{backend.EnvConfigFile: file, "TENCRYPT_LOCAL_PATH": "/env/keyring", "TENCRYPT_LOCAL_KEY_FILE": "/env/key", "TENCRYPT_LOCAL_PASSPHRASE": "s3cret"}
	flags := map[string]string{"local-key-file": "/flag/key"}
	src := backend.Sources{
		Getenv: func(k string) string { return env[k] },
		Flag:   func(n string) (string, bool) { v, ok := flags[n]; return v, ok },
	}
	s, err := backend.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if s.Backend != backend.DefaultBackend || s.AuditLog != "/file/audit" || s.Local.Path != "/env/keyring" || s.Local.KeyFile != "/flag/key" ||
		string(s.Local.Passphrase) != "s3cret" || s.ScopedTenant() != "fromfile" {
		t.Fatalf("Load: %+v", s)
	}
	for _, f := range backend.Fields() {
		if f.Env == "TENCRYPT_LOCAL_PASSPHRASE" && (f.Flag != "" || f.File != "") {
			t.Fatalf("the passphrase has a flag or a file name: %+v", f)
		}
	}
	env["TENCRYPT_PKCS11_POOL_SIZE"] = "not-a-number"
	if _, err := backend.Load(src); !errors.Is(err, backend.ErrConfig) || !strings.Contains(err.Error(), "TENCRYPT_PKCS11_POOL_SIZE") {
		t.Fatalf("Load with a bad variable: %v, want ErrConfig naming it", err)
	}
	delete(env, "TENCRYPT_PKCS11_POOL_SIZE")
	flags["pkcs11-pool-size"] = "many"
	if _, err := backend.Load(src); !errors.Is(err, backend.ErrConfig) || !strings.Contains(err.Error(), "--pkcs11-pool-size") {
		t.Fatalf("Load with a bad flag: %v, want ErrConfig naming it", err)
	}
	env["TENCRYPT_CONFIG"] = filepath.Join(t.TempDir(), "nosuch.yaml")
	if _, err := backend.Load(src); !errors.Is(err, backend.ErrConfig) {
		t.Fatalf("Load with a missing file: %v, want ErrConfig", err)
	}
}

func TestPassphrasePrompt(t *testing.T) {
	c := backend.Config{Backend: "local"}
	c.Local.Path = "/k"
	if p, ask := c.PassphrasePrompt(); !ask || !strings.Contains(p, "/k") {
		t.Fatalf("a keyring with nothing to unlock it: %q %v", p, ask)
	}
	c.SetPassphrase([]byte("x"))
	if _, ask := c.PassphrasePrompt(); ask {
		t.Fatal("asked again after SetPassphrase")
	}
	if _, ask := (backend.Config{Backend: "vault"}).PassphrasePrompt(); ask {
		t.Fatal("vault asked for a passphrase")
	}
}

func TestAccessKeyFileOnlyLocal(t *testing.T) {
	c := backend.Config{Backend: "local"}
	c.Local.Path = "/k/keyring"
	if !c.HasKeyringFile() || c.AccessKeyFile("blue") != c.Local.AccessKeyPath("blue") || c.AccessKeyFile("blue") == "" {
		t.Fatalf("local: HasKeyringFile %v, AccessKeyFile %q", c.HasKeyringFile(), c.AccessKeyFile("blue"))
	}
	c.Backend = "vault"
	if c.HasKeyringFile() || c.AccessKeyFile("blue") != "" {
		t.Fatalf("vault: HasKeyringFile %v, AccessKeyFile %q", c.HasKeyringFile(), c.AccessKeyFile("blue"))
	}
}
