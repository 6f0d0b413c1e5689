package main

import (
	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys/backend"
)

// keysConfig is the configuration of the commands that use keys: the
// backend's and the audit log's settings (keys/backend loads them).
type keysConfig = backend.Settings

// bindKeysFlags adds the persistent flags of every setting to cmd, plus
// --config.
func bindKeysFlags(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.String("config", "", "YAML configuration file (fields as in docs/KEYS.md; env "+backend.EnvConfigFile+")")
	for _, f := range backend.Fields() {
		switch {
		case f.Flag == "":
		case f.Bool:
			fs.Bool(f.Flag, false, f.Help)
		default:
			fs.String(f.Flag, "", f.Help)
		}
	}
}

// loadKeysConfig builds the configuration from, in increasing precedence,
// the config file, the environment and the flags.
func loadKeysConfig(cmd *cobra.Command, getenv func(string) string) (keysConfig, error) {
	path, _ := cmd.Flags().GetString("config")
	return backend.Load(backend.Sources{
		File:   path,
		Getenv: getenv,
		Flag: func(name string) (string, bool) {
			if !cmd.Flags().Changed(name) {
				return "", false
			}
			return cmd.Flags().Lookup(name).Value.String(), true
		},
	})
}
