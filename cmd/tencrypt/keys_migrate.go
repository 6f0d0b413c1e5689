package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys/local"
)

func newKeysMigrateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Rewrite a local keyring in the current format, keeping every key (local backend, admin)",
		Long: `migrate rewrites a format 1 local keyring as format 2, atomically, with the
admin credentials. Format 2 seals the record index, so a tenant's access key
no longer shows the other tenants' names, states and KEK version counts
(docs/KEYRING.md). Every tenant keeps its access key and KEK versions: access
key files and wrapped keys keep working, but tenants need this tencrypt (or
later) to read the migrated keyring. A keyring already in format 2 is left
alone. The only loss: the old access key of a tenant shredded before the
migration no longer reports "shredded", only a failed authentication.`,
		Example: `  tencrypt keys migrate --local-path ./keyring --local-key-file ./admin.key
  tencrypt keys migrate --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadKeysConfig(cmd, os.Getenv)
			if err != nil {
				return err
			}
			if !cfg.HasKeyringFile() {
				return usageError{fmt.Errorf("keys migrate: only the local backend has a keyring file to migrate, not %s", cfg.Backend)}
			}
			l := &cfg.Local
			if err := askPassphrase(cmd, &cfg); err != nil {
				return err
			}
			from, err := local.Migrate(cmd.Context(), cfg.Local)
			if err != nil {
				return err
			}
			res := map[string]any{"path": l.Path, "from_format": from, "format": 2, "migrated": from != 2}
			return report(cmd, res, func(w io.Writer) {
				if from == 2 {
					fmt.Fprintf(w, "keyring %s is already in format 2; nothing changed\n", l.Path)
					return
				}
				fmt.Fprintf(w, "keyring %s migrated from format %d to format 2; access keys and KEKs are unchanged\n", l.Path, from)
			})
		},
	}
}
