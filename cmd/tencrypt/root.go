package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "tencrypt",
		Short: "Encryption for the tenants of a Kubernetes or OpenShift cluster",
		Long: `tencrypt keeps each tenant's data encrypted wherever it travels or rests,
without changing application images. It has three planes on one key hierarchy:

  transit  a node agent gives every pod of a tenant a WireGuard tunnel to the
           tenant's other pods, on the same node and across nodes; an nftables
           guard in each pod drops plaintext or forged traffic from tenant
           peers, and stays in place if the agent dies (fail closed).
  rest     per-file encryption with all metadata in each file's header, so
           encrypted files survive rsync, tar and backups; a CLI and a FUSE
           mount with encrypted names.
  keys     one key-encryption key per tenant in a KMS (local keyring, Vault
           Transit or PKCS#11), envelope encryption, rotation, audit of every
           unwrap, and crypto-shredding of a tenant.

The agent takes its pods from the lab ("tencrypt lab up"), which builds nodes
and pods as network namespaces on this machine, so everything can be tried
without a cluster; reading pods from a Kubernetes API server is not built yet.`,
		Example: `  # Build a two-node lab with two tenants and look at it
  sudo tencrypt lab up
  tencrypt lab status
  sudo tencrypt lab exec blue-a -- ip addr
  sudo tencrypt lab down`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Flag errors are usage errors (exit 3), not failures of the work.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newVersionCmd(),
		newLabCmd(),
		newAgentCmd(), newTransitCmd(),
		newKeysCmd(),
		newFileCmd(), newVolumeCmd(), newMountCmd(),
		newKMSPluginCmd(),
	)
	markUsageErrors(root)
	return root
}

// markUsageErrors makes argument errors usage errors (exit 3) throughout the
// command tree. A command group shows its help when called bare, and takes a
// leftover word for a misspelt subcommand.
func markUsageErrors(c *cobra.Command) {
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = cobra.ArbitraryArgs
		c.RunE = func(cmd *cobra.Command, a []string) error {
			if len(a) == 0 {
				return cmd.Help()
			}
			return usageError{fmt.Errorf("unknown command %q for %q (see '%s --help')", a[0], cmd.CommandPath(), cmd.CommandPath())}
		}
	} else if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the tencrypt version and the Go version it was built with",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, goVersion := "(devel)", "unknown"
			if bi, ok := debug.ReadBuildInfo(); ok {
				goVersion = bi.GoVersion
				if bi.Main.Version != "" {
					v = bi.Main.Version
				}
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v += " " + s.Value
					}
				}
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "tencrypt %s (%s)\n", v, goVersion)
			return err
		},
	}
}
