package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/fscrypt"
)

// The fscrypt volume commands: create --mode fscrypt, unlock, lock, status
// (docs/FSCRYPT.md). 'volume init' stays the file mode's command.

// addFscryptVolumeCmds adds the fscrypt volume commands to 'volume'.
func addFscryptVolumeCmds(volume *cobra.Command) {
	volume.AddCommand(newVolumeCreateCmd(), newVolumeUnlockCmd(), newVolumeLockCmd(), newVolumeStatusCmd())
}

// Volume modes of 'volume create'.
const (
	modeFscrypt = "fscrypt"
	modeFile    = "file"
)

func volumeJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func newVolumeCreateCmd() *cobra.Command {
	var tenant, mode string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create DIR --mode fscrypt --tenant TENANT",
		Short: "Make a new or empty directory an encrypted volume of TENANT",
		Long: `create --mode fscrypt makes DIR (or takes it if it is empty) a volume
encrypted by the kernel (fscrypt v2, AES-256-XTS contents, AES-256-CTS
names): DIR/` + fscrypt.DataDir + ` is the encrypted directory, and DIR/` + fscrypt.MetadataFile + ` holds
the volume's fresh key, wrapped under TENANT's current KEK. DIR must be on
a file system with the encrypt feature (ext4 -O encrypt). The volume is
left locked: unlock it to use it. Copy all of DIR to move the volume.
Nothing outside DIR is changed, and a failed create leaves nothing behind.
For the file mode (encrypted files and names through FUSE) use
'tencrypt volume init'.`,
		Example: `  tencrypt volume create /srv/vols/blue-db --mode fscrypt --tenant blue
  tencrypt volume unlock /srv/vols/blue-db
  tencrypt volume status /srv/vols/blue-db --json
  tencrypt volume lock /srv/vols/blue-db`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if mode != modeFscrypt {
				return usageError{fmt.Errorf("--mode %q: one of: fscrypt (for the file mode use 'tencrypt volume init')", mode)}
			}
			if err := keys.ValidTenant(tenant); err != nil {
				return usageError{fmt.Errorf("--tenant %q: %w", tenant, err)}
			}
			return withVolumes(cmd, "volume create", func(ctx context.Context, v *fscrypt.Volumes) error {
				if _, err := v.Create(ctx, args[0], tenant); err != nil {
					return err
				}
				return printVolumeStatus(cmd, args[0], asJSON, "created")
			})
		},
	}
	cmd.Flags().StringVar(&mode, "mode", "", "how the volume is encrypted. One of: fscrypt")
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant whose KEK wraps the volume's key")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the volume's status as one JSON document on stdout")
	return cmd
}

// withVolumes opens the key backend and the audit log and runs fn with
// fscrypt volumes over them.
func withVolumes(cmd *cobra.Command, name string, fn func(context.Context, *fscrypt.Volumes) error) error {
	return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
		env, closeEnv, err := fileEnvelope(p, cfg)
		if err != nil {
			return err
		}
		defer closeEnv()
		return fn(ctx, fscrypt.New(env, caller(name)))
	})
}

// printVolumeStatus prints the volume's status: JSON on stdout, or one line on
// stderr starting with what was done.
func printVolumeStatus(cmd *cobra.Command, dir string, asJSON bool, done string) error {
	st, err := fscrypt.ReadStatus(dir)
	if err != nil {
		return err
	}
	if asJSON {
		return volumeJSON(cmd.OutOrStdout(), st)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s (tenant %s, key %s under KEK v%d); now %s\n", dir, done, st.Tenant, st.KeyIdentifier, st.KEKVersion, st.State)
	return nil
}

func newVolumeUnlockCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "unlock DIR",
		Short: "Add an fscrypt volume's key to the kernel: its files become readable",
		Long: `unlock unwraps the volume's key with its tenant's KEK (audited), derives
the fscrypt master key from it and adds it to the kernel, for every process
on the machine to see DIR/` + fscrypt.DataDir + ` in plaintext until 'volume lock'.
It refuses a volume already unlocked, and metadata that does not match the
directory's policy; it changes no file.`,
		Example: `  tencrypt volume unlock /srv/vols/blue-db`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withVolumes(cmd, "volume unlock", func(ctx context.Context, v *fscrypt.Volumes) error {
				if _, err := v.Unlock(ctx, args[0]); err != nil {
					return err
				}
				return printVolumeStatus(cmd, args[0], asJSON, "unlocked")
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the volume's status as one JSON document on stdout")
	return cmd
}

func newVolumeLockCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "lock DIR",
		Short: "Remove an fscrypt volume's key from the kernel: its files become unreadable",
		Long: `lock removes the volume's key from the kernel, which drops the plaintext
it cached: DIR/` + fscrypt.DataDir + ` then shows encrypted names and refuses
contents. Files still open stay readable through their open descriptors;
lock reports them (files_busy) and succeeds: close them and lock again.
A volume already locked is not an error.`,
		Example: `  tencrypt volume lock /srv/vols/blue-db`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := fscrypt.Lock(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return volumeJSON(cmd.OutOrStdout(), res)
			}
			switch {
			case !res.WasUnlocked:
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: already locked\n", args[0])
			case res.FilesBusy:
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: locked, but files are still in use and stay readable through them: close them and run 'tencrypt volume lock %s' again\n", args[0], args[0])
			default:
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: locked\n", args[0])
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
}

func newVolumeStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status DIR",
		Short: "Show an fscrypt volume's tenant, key identifier and whether it is unlocked",
		Long: `status reads the volume's metadata and asks the kernel for its key's
status. It needs no key backend and changes nothing.`,
		Example: `  tencrypt volume status /srv/vols/blue-db --json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := fscrypt.ReadStatus(args[0])
			if err != nil {
				return err
			}
			if asJSON {
				return volumeJSON(cmd.OutOrStdout(), st)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "state:          %s\ntenant:         %s\nkek version:    %d\nbackend:        %s\nvolume id:      %s\nkey identifier: %s\ncipher:         %s contents, %s names\n",
				st.State, st.Tenant, st.KEKVersion, st.Provider, st.VolumeID, st.KeyIdentifier, st.Contents, st.Filenames)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	return cmd
}
