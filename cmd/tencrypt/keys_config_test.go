package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/cobra"
)

// TLS verification can be turned off only in the configuration file: not by
// a stray environment variable, not by a flag.
func TestTLSSkipVerifyOnlyFromTheFile(t *testing.T) {
	cmd := &cobra.Command{Use: "x"}
	bindKeysFlags(cmd)
	if cmd.PersistentFlags().Lookup("vault-tls-skip-verify") != nil {
		t.Error("a --vault-tls-skip-verify flag exists")
	}
	env := map[string]string{"TENCRYPT_VAULT_TLS_SKIP_VERIFY": "true"}
	cfg, err := loadKeysConfig(cmd, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Vault.TLSSkipVerify {
		t.Error("TENCRYPT_VAULT_TLS_SKIP_VERIFY turned TLS verification off")
	}

	f := filepath.Join(t.TempDir(), "keys.yaml")
	os.WriteFile(f, []byte("vault:\n  tls_skip_verify: true\n"), 0o600)
	env["TENCRYPT_CONFIG"] = f
	if cfg, err = loadKeysConfig(cmd, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if !cfg.Vault.TLSSkipVerify {
		t.Error("the configuration file could not turn TLS verification off")
	}
}
