package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys/vault"
)

// newKeysVaultCmd groups what only the vault backend has: preparing Vault
// and issuing tenant tokens. It is added under `tencrypt keys`.
func newKeysVaultCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vault",
		Short: "Prepare HashiCorp Vault for tencrypt and issue tenant tokens",
		Long: `The vault backend keeps each tenant's KEK as a Vault transit key and leaves
tenant separation to Vault's policies. These commands use the --vault-* settings
(or TENCRYPT_VAULT_*, VAULT_ADDR and VAULT_TOKEN) whatever --backend says.
docs/VAULT.md describes the layout, policies and tokens.`,
		Example: `  # Once, with an operator token: enable transit, set up the token role
  VAULT_ADDR=https://vault:8200 VAULT_TOKEN=... tencrypt keys vault setup
  # The policy to give tencrypt's admin token
  tencrypt keys vault admin-policy > tencrypt-admin.hcl
  # Per tenant, with the admin token
  tencrypt keys create blue --backend vault
  tencrypt keys vault grant blue --out blue.vault-token`,
	}
	cmd.AddCommand(newKeysVaultSetupCmd(), newKeysVaultAdminPolicyCmd(), newKeysVaultGrantCmd())
	return cmd
}

// openVault opens the vault backend from the keys configuration.
func openVault(cmd *cobra.Command) (*vault.Provider, error) {
	cfg, err := loadKeysConfig(cmd, os.Getenv)
	if err != nil {
		return nil, err
	}
	return vault.New(cfg.Vault)
}

func newKeysVaultSetupCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "setup",
		Short: "Enable transit, turn off key upsert and write the tenant token role (operator, idempotent)",
		Long: `setup enables the transit engine at --vault-mount if it is missing, sets
disable_upsert on it (so an encrypt can never re-create a shredded tenant's key)
and writes the token role tenant tokens are issued from. It needs a token that
may manage mounts and token roles, and changes nothing else; running it again
is harmless.`,
		Example: `  VAULT_TOKEN=... tencrypt keys vault setup --vault-addr https://vault:8200`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := openVault(cmd)
			if err != nil {
				return err
			}
			defer p.Close()
			if err := p.Setup(cmd.Context()); err != nil {
				return err
			}
			out := map[string]any{"addr": p.Addr(), "mount": p.Mount(), "token_role": p.TokenRole(), "upsert": false}
			return report(cmd, out, func(w io.Writer) {
				fmt.Fprintf(w, "Vault at %s is ready: transit at %s with key upsert off, token role %s\n", p.Addr(), p.Mount(), p.TokenRole())
				fmt.Fprintln(w, "give tencrypt's admin a token with the policy from `tencrypt keys vault admin-policy`")
			})
		},
	}
}

func newKeysVaultAdminPolicyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "admin-policy",
		Short: "Print the Vault policy tencrypt's admin token needs (HCL)",
		Long: `admin-policy prints an ACL policy allowing every keys command and issuing
tenant tokens, for tencrypt's keys only. It contacts no server.`,
		Example: `  tencrypt keys vault admin-policy > tencrypt-admin.hcl
  vault policy write tencrypt-admin tencrypt-admin.hcl
  vault token create -policy tencrypt-admin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := openVault(cmd)
			if err != nil {
				return err
			}
			defer p.Close()
			hcl := p.AdminPolicy()
			return report(cmd, map[string]string{"policy": hcl}, func(w io.Writer) { fmt.Fprint(w, hcl) })
		},
	}
}

func newKeysVaultGrantCmd() *cobra.Command {
	var outPath string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "grant TENANT --out FILE",
		Short: "Write TENANT's Vault policy and issue a token under it (admin)",
		Long: `grant writes the policy that lets TENANT's workloads encrypt, decrypt and rewrap
with TENANT's key and read its versions, and nothing else, then issues a token
holding only that policy and writes it to --out (a new file, mode 0600; an
existing file is never replaced). The token is never printed; the output names
its accessor, which revokes it: vault token revoke -accessor ACCESSOR.`,
		Example: `  tencrypt keys vault grant blue --out /run/secrets/blue.vault-token --ttl 720h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := tenantArg(args)
			if err != nil {
				return err
			}
			if outPath == "" {
				return usageError{errors.New("keys vault grant: set --out, the file to write the token to")}
			}
			p, err := openVault(cmd)
			if err != nil {
				return err
			}
			defer p.Close()
			tok, err := p.GrantTenant(cmd.Context(), tenant, ttl)
			if err != nil {
				return err
			}
			if err := tok.WriteFile(outPath); err != nil {
				if errors.Is(err, fs.ErrExist) {
					err = fmt.Errorf("%s exists: remove it or choose another --out", outPath)
				}
				return fmt.Errorf("keys vault grant: the token (accessor %s) was issued but not saved, revoke it: %w", tok.Accessor, err)
			}
			out := map[string]any{"tenant": tenant, "policy": tok.Policy, "accessor": tok.Accessor, "ttl_seconds": int64(tok.TTL / time.Second), "token_file": outPath}
			return report(cmd, out, func(w io.Writer) {
				fmt.Fprintf(w, "token for %s (policy %s, accessor %s, valid %s) written to %s (mode 0600; give it to %s only)\n",
					tenant, tok.Policy, tok.Accessor, tok.TTL, outPath, tenant)
			})
		},
	}
	cmd.Flags().StringVar(&outPath, "out", "", "file to write the token to (created, mode 0600)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "token lifetime, e.g. 720h (default: Vault's token default)")
	return cmd
}
