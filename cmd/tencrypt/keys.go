package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/backend"
	"github.com/tencrypt/tencrypt/keys/local"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage tenant key-encryption keys: create, rotate, rewrap, retire, shred, audit",
		Long: `Every tenant has one key-encryption key (KEK) in a key backend, with
versions; data-encryption keys (DEKs) are wrapped under it. These commands
manage the KEKs. They never print a key.

Backends (--backend): local (a keyring file on this machine, the default),
vault (HashiCorp Vault Transit) and pkcs11 (an HSM or SoftHSM2 token).

Configuration comes from flags, then TENCRYPT_* environment variables, then a
YAML file (--config or TENCRYPT_CONFIG); each flag's help names its variable
and file field. Secrets (the local passphrase, a Vault token, a PIN) come only
from files or the environment (TENCRYPT_LOCAL_PASSPHRASE, TENCRYPT_VAULT_TOKEN,
TENCRYPT_PKCS11_PIN), never from flags. Commands that report take --json and
print one JSON document on stdout. docs/KEYS.md has the details.`,
		Example: `  # A local keyring unlocked by a key file, two tenants
  tencrypt keys init   --local-path ./keyring --local-key-file ./admin.key
  export TENCRYPT_LOCAL_PATH=./keyring TENCRYPT_LOCAL_KEY_FILE=./admin.key
  tencrypt keys create blue
  tencrypt keys create red
  tencrypt keys list --json

  # Rotate, move wrapped keys to the new version, drop the old one
  tencrypt keys rotate blue
  tencrypt keys rewrap blobs/ /srv/blue.enc
  tencrypt keys retire blue --min-version 2 --check blobs/ --check /srv/blue.enc

  # Destroy a tenant's keys for good
  tencrypt keys shred red --yes`,
	}
	bindKeysFlags(cmd)
	cmd.PersistentFlags().Bool("json", false, "print one JSON document on stdout instead of text")
	cmd.AddCommand(newKeysInitCmd(), newKeysCreateCmd(), newKeysRotateCmd(), newKeysListCmd(), newKeysRewrapCmd(),
		newKeysRetireCmd(), newKeysShredCmd(), newKeysAuditCmd(), newKeysBenchCmd(), newKeysReissueCmd(), newKeysMigrateCmd(), newKeysVaultCmd())
	return cmd
}

// setuper is implemented by backends with a one-time, idempotent set-up
// (Vault: enable the transit engine, token role ...); keys init runs it.
type setuper interface {
	Setup(ctx context.Context) error
}

func jsonOut(cmd *cobra.Command) bool {
	b, _ := cmd.Flags().GetBool("json")
	return b
}

// report prints v as JSON with --json, and the human text otherwise.
func report(cmd *cobra.Command, v any, human func(w io.Writer)) error {
	if jsonOut(cmd) {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	human(cmd.OutOrStdout())
	return nil
}

// openKeys loads the configuration and opens the backend. For a local
// keyring with no way to unlock it configured, it asks for the passphrase
// on a terminal.
func openKeys(cmd *cobra.Command) (keys.KEKProvider, keysConfig, error) {
	cfg, err := loadKeysConfig(cmd, os.Getenv)
	if err != nil {
		return nil, cfg, err
	}
	if err := askPassphrase(cmd, &cfg); err != nil {
		return nil, cfg, err
	}
	p, err := backend.Open(cmd.Context(), cfg.Config)
	if err != nil {
		return nil, cfg, err
	}
	return p, cfg, nil
}

// askPassphrase asks on a terminal for the passphrase of a keyring the
// configuration gives no other way to unlock (keys/backend decides when);
// without a terminal it leaves the backend to report what is missing.
func askPassphrase(cmd *cobra.Command, cfg *keysConfig) error {
	prompt, ask := cfg.PassphrasePrompt()
	if !ask {
		return nil
	}
	in, ok := terminal(cmd.InOrStdin())
	if !ok {
		return nil
	}
	b, err := readSecret(in, cmd.ErrOrStderr(), prompt)
	if err != nil {
		return err
	}
	cfg.SetPassphrase(b)
	return nil
}

// withKeys runs fn with an open provider and closes it after.
func withKeys(cmd *cobra.Command, fn func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error) error {
	p, cfg, err := openKeys(cmd)
	if err != nil {
		return err
	}
	defer p.Close()
	return fn(cmd.Context(), p, cfg)
}

func tenantArg(args []string) (string, error) {
	if err := keys.ValidTenant(args[0]); err != nil {
		return "", fmt.Errorf("tenant %q: %w", args[0], err)
	}
	return args[0], nil
}

func newKeysInitCmd() *cobra.Command {
	var kdfTime, kdfMem uint32
	var kdfThreads uint8
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create an empty local keyring, or check that a Vault or PKCS#11 backend answers",
		Long: `For the local backend, init creates an empty keyring file (mode 0600) at
--local-path. It is unlocked either by a key file (--local-key-file; init
writes a new random key there if the file does not exist) or by a passphrase
(TENCRYPT_LOCAL_PASSPHRASE, --local-passphrase-file, or asked on the
terminal twice), stretched with Argon2id. init never replaces an existing
keyring.

For other backends, init opens the backend with the configured credentials,
runs its one-time set-up if it has one (Vault: enable the transit engine and
the tenant token role, idempotently; docs/VAULT.md) and checks that it
answers.`,
		Example: `  tencrypt keys init --local-path /var/lib/tencrypt/keyring --local-key-file /etc/tencrypt/admin.key
  TENCRYPT_LOCAL_PASSPHRASE=... tencrypt keys init --local-path ./keyring --json
  tencrypt keys init --backend vault --vault-addr http://127.0.0.1:8200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadKeysConfig(cmd, os.Getenv)
			if err != nil {
				return err
			}
			if !cfg.HasKeyringFile() {
				p, err := backend.Open(cmd.Context(), cfg.Config)
				if err != nil {
					return err
				}
				defer p.Close()
				s, setup := p.(setuper)
				if setup {
					if err := s.Setup(cmd.Context()); err != nil {
						return err
					}
				}
				if err := p.Health(cmd.Context()); err != nil {
					return err
				}
				return report(cmd, map[string]any{"backend": p.Name(), "ready": true, "setup": setup}, func(w io.Writer) {
					if setup {
						fmt.Fprintf(w, "backend %s is set up and answers\n", p.Name())
					} else {
						fmt.Fprintf(w, "backend %s answers; nothing to initialise\n", p.Name())
					}
				})
			}
			return keysInitLocal(cmd, cfg, local.InitOptions{KDFTime: kdfTime, KDFMemoryKiB: kdfMem, KDFThreads: kdfThreads})
		},
	}
	cmd.Flags().Uint32Var(&kdfTime, "kdf-time", 0, "Argon2id passes for a passphrase keyring (default 3)")
	cmd.Flags().Uint32Var(&kdfMem, "kdf-memory-kib", 0, "Argon2id memory in KiB (default 65536)")
	cmd.Flags().Uint8Var(&kdfThreads, "kdf-threads", 0, "Argon2id lanes (default 4)")
	return cmd
}

// The weakest Argon2id settings keys init accepts (OWASP's minimum: 19 MiB,
// two passes).
const (
	minKDFTime      = 2
	minKDFMemoryKiB = 19 << 10
)

func keysInitLocal(cmd *cobra.Command, cfg keysConfig, opts local.InitOptions) error {
	l := cfg.Local
	if l.Path == "" {
		return usageError{errors.New("keys init: set the keyring path (--local-path or TENCRYPT_LOCAL_PATH)")}
	}
	if opts.KDFTime != 0 && (opts.KDFMemoryKiB == 0 || opts.KDFThreads == 0) {
		return usageError{errors.New("keys init: --kdf-time needs --kdf-memory-kib and --kdf-threads too")}
	}
	// The file format accepts weaker settings (readers only guard against
	// resource exhaustion); a new keyring gets at least OWASP's minimum for
	// Argon2id.
	if opts.KDFTime != 0 && (opts.KDFTime < minKDFTime || opts.KDFMemoryKiB < minKDFMemoryKiB) {
		return usageError{fmt.Errorf("keys init: Argon2id settings too weak for a passphrase: want --kdf-time %d or more and --kdf-memory-kib %d or more", minKDFTime, minKDFMemoryKiB)}
	}
	opts.Path = l.Path
	unlock, created := "passphrase", false
	switch {
	case l.KeyFile != "":
		unlock, opts.KeyFile = "key-file", l.KeyFile
		if _, err := os.Stat(l.KeyFile); errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(l.Path); err == nil {
				return fmt.Errorf("keyring %s exists already; nothing was changed", l.Path)
			}
			if err := local.GenerateKeyFile(l.KeyFile); err != nil {
				return fmt.Errorf("keys init: new key file: %w", err)
			}
			created = true
		}
	case l.PassphraseFile != "":
		cfg.Local.Path = l.Path
		b, err := os.ReadFile(l.PassphraseFile)
		if err != nil {
			return fmt.Errorf("keys init: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		clear(b)
		opts.Passphrase = []byte(strings.TrimSuffix(line, "\r"))
	case len(l.Passphrase) > 0:
		opts.Passphrase = l.Passphrase
	default:
		in, ok := terminal(cmd.InOrStdin())
		if !ok {
			return usageError{errors.New("keys init: no key file or passphrase: set --local-key-file, --local-passphrase-file or TENCRYPT_LOCAL_PASSPHRASE")}
		}
		p1, err := readSecret(in, cmd.ErrOrStderr(), "New passphrase for "+l.Path+": ")
		if err != nil {
			return err
		}
		p2, err := readSecret(in, cmd.ErrOrStderr(), "Same passphrase again: ")
		if err != nil {
			return err
		}
		same := string(p1) == string(p2)
		clear(p2)
		if !same || len(p1) == 0 {
			clear(p1)
			return usageError{errors.New("keys init: the passphrases differ or are empty; nothing was changed")}
		}
		opts.Passphrase = p1
	}
	if len(opts.Passphrase) == 0 && opts.KeyFile == "" {
		return usageError{errors.New("keys init: the passphrase is empty")}
	}
	if err := local.Init(cmd.Context(), opts); err != nil {
		if created {
			_ = os.Remove(l.KeyFile)
		}
		return err
	}
	out := map[string]any{"backend": cfg.Backend, "path": l.Path, "unlock": unlock}
	if opts.KeyFile != "" {
		out["key_file"], out["key_file_created"] = opts.KeyFile, created
	}
	return report(cmd, out, func(w io.Writer) {
		fmt.Fprintf(w, "created keyring %s, unlocked by %s\n", l.Path, unlock)
		if created {
			fmt.Fprintf(w, "wrote a new admin key to %s (mode 0600): keep it safe; without it the keyring cannot be opened\n", l.KeyFile)
		}
	})
}

func newKeysCreateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "create TENANT",
		Short: "Create a tenant's first KEK version (admin)",
		Long: `create makes version 1 of TENANT's KEK. TENANT is a DNS-1123 label (a namespace
name). A shredded name can never be created again, so old ciphertexts can never
open under a new key.

With the local backend, create also issues the tenant's access key and writes
it to <keyring>.access/TENANT.key (or --local-access-key-dir), mode 0600: a
workload given only that file can wrap and unwrap for TENANT and nothing else.`,
		Example: `  tencrypt keys create blue
  tencrypt keys create red --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := tenantArg(args)
			if err != nil {
				return err
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				if err := p.CreateTenant(ctx, tenant); err != nil {
					return err
				}
				ti, err := p.Tenant(ctx, tenant)
				if err != nil {
					return err
				}
				out := struct {
					keys.TenantInfo
					AccessKeyFile string `json:"access_key_file,omitempty"`
				}{TenantInfo: ti}
				out.AccessKeyFile = cfg.AccessKeyFile(tenant)
				return report(cmd, out, func(w io.Writer) {
					fmt.Fprintf(w, "created tenant %s (KEK version %d)\n", tenant, ti.Current)
					if out.AccessKeyFile != "" {
						fmt.Fprintf(w, "access key for %s's workloads: %s (mode 0600; give it to %s only)\n", tenant, out.AccessKeyFile, tenant)
					}
				})
			})
		},
	}
}

func newKeysReissueCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "reissue TENANT",
		Short: "Replace a tenant's local access key so the old one no longer opens the keyring (local backend, admin)",
		Long: `reissue writes a new access key for TENANT over its access key file and
re-seals the tenant's record under it, so anyone holding the old key can no
longer open the tenant's KEKs. Whoever held the old key may already have read
the KEKs, so a leak is revoked by reissue, then 'keys rotate TENANT', 'keys
rewrap' of the tenant's wrapped keys and 'keys retire' of the old versions
(docs/KEYRING.md). reissue itself does not change the KEKs; wrapped keys
stay valid. Give the new file to the
tenant's workloads.

Only the local backend has access keys; for Vault revoke the tenant's token,
for PKCS#11 change the token's PIN.`,
		Example: `  tencrypt keys reissue blue
  tencrypt keys reissue blue --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := tenantArg(args)
			if err != nil {
				return err
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, _ keysConfig) error {
				lp, ok := p.(*local.Provider)
				if !ok {
					return usageError{fmt.Errorf("keys reissue: the %s backend has no access keys (see --help)", p.Name())}
				}
				path, err := lp.ReissueAccessKey(ctx, tenant)
				if err != nil {
					return err
				}
				return report(cmd, map[string]any{"tenant": tenant, "access_key_file": path}, func(w io.Writer) {
					fmt.Fprintf(w, "new access key for %s: %s (mode 0600); the old key no longer opens the keyring (after a leak, also rotate, rewrap and retire: see --help)\n", tenant, path)
				})
			})
		},
	}
}

func newKeysRotateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate TENANT",
		Short: "Add a new KEK version for a tenant and make it current (admin)",
		Long: `rotate adds a KEK version; new wraps use it. Older versions stay available for
unwrapping until they are retired, so nothing becomes unreadable. Move
existing wrapped keys to the new version with 'keys rewrap', then drop the old
versions with 'keys retire'.`,
		Example: `  tencrypt keys rotate blue
  tencrypt keys rotate blue --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := tenantArg(args)
			if err != nil {
				return err
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, _ keysConfig) error {
				v, err := p.Rotate(ctx, tenant)
				if err != nil {
					return err
				}
				ti, err := p.Tenant(ctx, tenant)
				if err != nil {
					return err
				}
				return report(cmd, ti, func(w io.Writer) {
					fmt.Fprintf(w, "tenant %s: KEK version %d is current (versions %d to %d available)\n", tenant, v, ti.MinVersion, ti.Current)
				})
			})
		},
	}
}

func newKeysListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the tenants and their KEK versions",
		Long: `list shows every tenant the credentials can see (tenant credentials see only
their own), with the current and oldest available KEK version. Shredded
tenants are listed too, as tombstones. It changes nothing.`,
		Example: `  tencrypt keys list
  tencrypt keys list --json | jq '.[] | select(.current_version > 1)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, _ keysConfig) error {
				all, err := p.Tenants(ctx)
				if err != nil {
					return err
				}
				if all == nil {
					all = []keys.TenantInfo{}
				}
				return report(cmd, all, func(w io.Writer) {
					tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "TENANT\tCURRENT\tMIN\tCREATED\tSTATE")
					for _, t := range all {
						state, created := "active", "-"
						if t.Shredded {
							state = "shredded"
						}
						if !t.Created.IsZero() {
							created = t.Created.UTC().Format(time.RFC3339)
						}
						fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", t.Tenant, t.Current, t.MinVersion, created, state)
					}
					tw.Flush()
				})
			})
		},
	}
}

// caller names this process in audit records.
func caller(cmd string) string {
	return fmt.Sprintf("tencrypt %s (uid %d, pid %d)", cmd, os.Getuid(), os.Getpid())
}

func newKeysShredCmd() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "shred TENANT",
		Short: "Destroy every KEK version of a tenant: its data becomes unreadable by anyone (admin)",
		Long: `shred destroys all of TENANT's KEK versions in the backend and leaves a
tombstone, so the name can never be created again. Every DEK wrapped for
TENANT, and so everything encrypted under them, can then never be decrypted,
by anyone; unwraps fail with "tenant keys were shredded" (exit 9). There is no
undo. Copies of the key material made outside tencrypt (backups of the local
keyring file, Vault snapshots, HSM backups) are not reached: destroy them too
(docs/KEYS.md).

On a terminal shred asks you to type the tenant's name; otherwise it needs
--yes.`,
		Example: `  tencrypt keys shred red
  tencrypt keys shred red --yes --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := tenantArg(args)
			if err != nil {
				return err
			}
			if !yes {
				in, ok := terminal(cmd.InOrStdin())
				if !ok {
					return usageError{fmt.Errorf("keys shred: refusing to shred tenant %s without --yes (stdin is not a terminal to confirm on)", tenant)}
				}
				q := fmt.Sprintf("This destroys every key of tenant %s. Everything encrypted for %s becomes unreadable, by anyone, forever.", tenant, tenant)
				if !confirm(in, cmd.ErrOrStderr(), q, tenant) {
					return usageError{errors.New("keys shred: not confirmed; nothing was changed")}
				}
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, _ keysConfig) error {
				if err := p.Shred(ctx, tenant); err != nil {
					return err
				}
				return report(cmd, map[string]any{"tenant": tenant, "shredded": true}, func(w io.Writer) {
					fmt.Fprintf(w, "tenant %s shredded: its keys are destroyed and its data cannot be decrypted\n", tenant)
				})
			})
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation (for scripts)")
	return cmd
}

func newKeysAuditCmd() *cobra.Command {
	var tenant, since, op string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log of unwraps and rewraps",
		Long: `audit prints the records of the audit log (--audit-log): one per unwrap or
rewrap, written before the key was released, with time, tenant, key version,
purpose, caller, backend and outcome. The format is in docs/KEYS.md. It
changes nothing and needs no backend credentials.

The log is written by the process that unwraps, which chooses its path
(--audit-log, TENCRYPT_AUDIT_LOG) and names itself in "caller". With the
local and pkcs11 backends a tenant workload holding its own access key or
PIN can unwrap elsewhere or without tencrypt, so for such processes the log
is advisory. Authoritative records come from Vault's audit device (vault
audit enable file file_path=...), or, for local, from unwraps done only by
processes the tenant does not control (the node agent, a CSI driver, an
operator's mount) logging where tenants cannot write (docs/KEYS.md).`,
		Example: `  tencrypt keys audit --tenant blue --since 24h
  tencrypt keys audit --json | jq '.[] | select(.outcome != "ok")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadKeysConfig(cmd, os.Getenv)
			if err != nil {
				return err
			}
			var after time.Time
			if since != "" {
				if d, err := time.ParseDuration(since); err == nil {
					after = time.Now().Add(-d)
				} else if after, err = time.Parse(time.RFC3339, since); err != nil {
					return usageError{fmt.Errorf("--since %q: want a duration (24h) or an RFC 3339 time", since)}
				}
			}
			f, err := os.Open(cfg.AuditLog)
			if err != nil {
				return fmt.Errorf("audit log: %w", err)
			}
			defer f.Close()
			recs := []keys.AuditRecord{}
			err = keys.ReadAudit(f, func(r keys.AuditRecord) error {
				if (tenant == "" || r.Tenant == tenant) && (op == "" || r.Op == op) && !r.Time.Before(after) {
					recs = append(recs, r)
				}
				return nil
			})
			if err != nil {
				return err
			}
			return report(cmd, recs, func(w io.Writer) {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tOP\tTENANT\tVERSION\tPURPOSE\tCALLER\tBACKEND\tOUTCOME")
				for _, r := range recs {
					v := strconv.FormatUint(uint64(r.KeyVersion), 10)
					if r.NewKeyVersion != 0 {
						v += "->" + strconv.FormatUint(uint64(r.NewKeyVersion), 10)
					}
					outcome := r.Outcome
					if r.Error != "" {
						outcome += " (" + r.Error + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), r.Op, r.Tenant, v, r.Purpose, r.Caller, r.Provider, outcome)
				}
				tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "only this tenant's records")
	cmd.Flags().StringVar(&since, "since", "", "only records from this long ago (24h) or since this RFC 3339 time")
	cmd.Flags().StringVar(&op, "op", "", "only this operation: unwrap or rewrap")
	return cmd
}
