package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/vault"
	"github.com/tencrypt/tencrypt/keys/vault/vaulttest"
)

// runKeysVault runs `keys vault ARGS` in-process with env as the only
// environment, and returns stdout and the error.
func runKeysVault(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	k := &cobra.Command{Use: "keys", SilenceUsage: true, SilenceErrors: true}
	bindKeysFlags(k)
	k.PersistentFlags().Bool("json", false, "")
	k.AddCommand(newKeysVaultCmd())
	var out bytes.Buffer
	k.SetOut(&out)
	k.SetErr(&out)
	k.SetArgs(append([]string{"vault"}, args...))
	err := k.ExecuteContext(t.Context())
	return out.String(), err
}

func TestKeysVaultCommands(t *testing.T) {
	s := vaulttest.Start(t)
	env := map[string]string{"VAULT_ADDR": "", "VAULT_TOKEN": "", "TENCRYPT_VAULT_ADDR": s.Addr, "TENCRYPT_VAULT_TOKEN": s.RootToken}
	if out, err := runKeysVault(t, env, "setup", "--json"); err != nil {
		t.Fatalf("keys vault setup: %v\n%s", err, out)
	}
	// An admin with only the printed policy does the rest.
	out, err := runKeysVault(t, env, "admin-policy")
	if err != nil || !strings.Contains(out, `path "transit/keys/tencrypt-*"`) {
		t.Fatalf("keys vault admin-policy: %v\n%s", err, out)
	}
	root, err := vault.New(vault.Config{Addr: s.Addr, Token: s.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.CreateTenant(t.Context(), "blue"); err != nil {
		t.Fatal(err)
	}

	tokFile := filepath.Join(t.TempDir(), "blue.vault-token")
	out, err = runKeysVault(t, env, "grant", "blue", "--out", tokFile, "--ttl", "1h", "--json")
	if err != nil {
		t.Fatalf("keys vault grant: %v\n%s", err, out)
	}
	var rep struct {
		Tenant, Accessor, Policy string
		TokenFile                string `json:"token_file"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Tenant != "blue" || rep.Accessor == "" || rep.TokenFile != tokFile {
		t.Fatalf("grant --json output %q (%v)", out, err)
	}
	fi, err := os.Stat(tokFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want mode 0600", err, fi.Mode())
	}
	tok, _ := os.ReadFile(tokFile)
	if strings.Contains(out, strings.TrimSpace(string(tok))) {
		t.Fatal("grant printed the token")
	}

	// The token file works, for blue only.
	bp, err := vault.New(vault.Config{Addr: s.Addr, TokenFile: tokFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bp.Wrap(t.Context(), "blue", []byte("dek"), nil); err != nil {
		t.Fatalf("Wrap with blue's granted token: %v", err)
	}
	if err := root.CreateTenant(t.Context(), "red"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := bp.Wrap(t.Context(), "red", []byte("dek"), nil); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("Wrap for red with blue's token: %v, want ErrPermissionDenied", err)
	}

	// grant never replaces a file, and bad input is a usage error.
	if out, err := runKeysVault(t, env, "grant", "blue", "--out", tokFile); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("grant over an existing file: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(tokFile); !bytes.Equal(after, tok) {
		t.Fatal("grant changed an existing token file")
	}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
	}{
		{"no --out", env, []string{"grant", "blue"}, exitcodes.Usage},
		{"bad tenant", env, []string{"grant", "Blue!", "--out", tokFile + "2"}, exitcodes.Usage},
		{"no address", map[string]string{"VAULT_ADDR": "", "TENCRYPT_VAULT_ADDR": "", "TENCRYPT_VAULT_TOKEN": "x"}, []string{"setup"}, exitcodes.Usage},
		{"wrong token", map[string]string{"TENCRYPT_VAULT_ADDR": s.Addr, "TENCRYPT_VAULT_TOKEN": "hvs.wrong"}, []string{"setup"}, exitcodes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runKeysVault(t, tt.env, tt.args...)
			if got := exitCode(err); got != tt.code {
				t.Fatalf("keys vault %v: exit %d (%v), want %d\n%s", tt.args, got, err, tt.code, out)
			}
		})
	}
}

// TestKeysCLIVault drives the built binary with --backend vault against a
// real Vault dev server.
func TestKeysCLIVault(t *testing.T) {
	s := vaulttest.Start(t)
	root, err := vault.New(vault.Config{Addr: s.Addr, Token: s.RootToken})
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := newKeysEnv(t)
	e.env = append(e.env, "VAULT_ADDR=", "VAULT_TOKEN=", "TENCRYPT_BACKEND=vault",
		"TENCRYPT_VAULT_ADDR="+s.Addr, "TENCRYPT_VAULT_TOKEN="+s.RootToken)
	e.ok("keys", "init")
	e.ok("keys", "create", "blue")
	e.want(exitcodes.UnknownTenant, "keys", "rotate", "ghost")
	e.ok("keys", "rotate", "blue")
	var list []keys.TenantInfo
	if err := json.Unmarshal([]byte(e.ok("keys", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Tenant != "blue" || list[0].Current != 2 {
		t.Fatalf("keys list --json: %+v, want blue at version 2", list)
	}
	e.ok("keys", "shred", "blue", "--yes")
	e.want(exitcodes.Shredded, "keys", "create", "blue")

	wrong := append(append([]string{}, e.env...), "TENCRYPT_VAULT_TOKEN=hvs.wrong")
	e.env, wrong = wrong, e.env
	e.want(exitcodes.PermissionDenied, "keys", "create", "red")
	e.env = wrong

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if stderr := e.want(exitcodes.BackendUnavailable, "keys", "create", "red"); !strings.Contains(stderr, "is Vault running?") {
		t.Fatalf("keys create with Vault stopped says %q; want it to ask whether Vault is running", stderr)
	}
}
