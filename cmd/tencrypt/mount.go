package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/fusefs"
	volnames "github.com/tencrypt/tencrypt/rest/names"
)

// errMountFailed: the kernel refused the mount (no /dev/fuse, no
// fusermount3, a busy or missing mount point).
var errMountFailed = errors.New("FUSE mount failed")

func newVolumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Create, unlock and lock encrypted volumes: file mode (for 'tencrypt mount') or kernel fscrypt",
		Long: `A volume keeps a tenant's files encrypted at rest under a key of its own,
held only wrapped under the tenant's KEK, inside the volume.

File mode ('volume init', then 'tencrypt mount'): every file is a tencrypt
file and names are encrypted, so the cipher directory can be copied with
rsync or tar (docs/MOUNT.md). fscrypt mode ('volume create --mode fscrypt',
'unlock', 'lock', 'status'): the kernel encrypts an ext4 or f2fs directory
with a v2 policy (docs/FSCRYPT.md).`,
	}
	bindKeysFlags(cmd)
	cmd.AddCommand(newVolumeInitCmd())
	addFscryptVolumeCmds(cmd)
	return cmd
}

type volumeInitResult struct {
	CipherDir  string `json:"cipher_dir"`
	VolumeID   string `json:"volume_id"`
	Tenant     string `json:"tenant"`
	KEKVersion uint32 `json:"kek_version"`
}

func newVolumeInitCmd() *cobra.Command {
	var tenant, mode string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "init CIPHERDIR --tenant TENANT",
		Short: "Make an empty directory a volume of encrypted files and names",
		Long: `init creates CIPHERDIR (or uses it if it is empty) and writes its volume
configuration, ` + volnames.VolumeFile + `: a random volume ID and a fresh name key
wrapped under TENANT's current KEK, and the root's directory IV,
` + volnames.DirIVFile + ` (docs/NAMES.md). It never touches a directory that is
not empty. Mount the volume with 'tencrypt mount'.

--root-mode sets CIPHERDIR's permissions, which are those of the mount's root
(default 0700: only its owner may enter it; with 'tencrypt mount
--allow-other', 0755 lets every user in, 1777 lets every user create
entries, as /tmp does). The owner must keep rwx (the mode includes 0700).`,
		Example: `  tencrypt volume init /srv/blue.enc --tenant blue
  tencrypt volume init /srv/shared.enc --tenant blue --root-mode 0755
  tencrypt mount /srv/blue.enc /mnt/blue`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := keys.ValidTenant(tenant); err != nil {
				return usageError{fmt.Errorf("--tenant %q: %w", tenant, err)}
			}
			perm, err := rootMode(mode)
			if err != nil {
				return usageError{err}
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				env, closeEnv, err := fileEnvelope(p, cfg)
				if err != nil {
					return err
				}
				defer closeEnv()
				v, err := volnames.InitVolume(ctx, args[0], env, tenant, time.Now())
				if err != nil {
					return err
				}
				if mode != "" {
					if err := os.Chmod(args[0], perm); err != nil {
						return fmt.Errorf("the volume was made, but setting its mode failed (chmod %s %s by hand): %w", mode, args[0], err)
					}
				}
				res := volumeInitResult{CipherDir: args[0], VolumeID: fmt.Sprintf("%x", v.ID), Tenant: tenant, KEKVersion: v.NameKey.KEKVersion}
				if asJSON {
					return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "initialised volume %s for tenant %s (name key under KEK v%d)\n", res.CipherDir, tenant, res.KEKVersion)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant whose KEK wraps the volume's name key and its files' keys")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON document on stdout")
	cmd.Flags().StringVar(&mode, "root-mode", "", "permissions of CIPHERDIR, the mount's root, in octal (default 0700)")
	return cmd
}

// rootMode parses --root-mode: octal permission bits (with setgid and sticky
// allowed) that keep the owner's rwx; "" is the default, 0700.
func rootMode(s string) (os.FileMode, error) {
	if s == "" {
		return 0o700, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m&^0o3777 != 0 || m&0o700 != 0o700 {
		return 0, fmt.Errorf("--root-mode %q: want octal permissions that keep the owner's rwx, such as 0700, 0755 or 1777", s)
	}
	perm := os.FileMode(m & 0o777)
	if m&0o1000 != 0 {
		perm |= os.ModeSticky
	}
	if m&0o2000 != 0 {
		perm |= os.ModeSetgid
	}
	return perm, nil
}

type mountFlags struct {
	tenant     string
	allowOther bool
	debug      bool
	keyCache   int
	maxWrite   int
}

func newMountCmd() *cobra.Command {
	var f mountFlags
	cmd := &cobra.Command{
		Use:   "mount CIPHERDIR MOUNTPOINT",
		Short: "Mount a volume of encrypted files as a plaintext directory (FUSE)",
		Long: `mount serves a plaintext view of CIPHERDIR (made by 'tencrypt volume init') on
MOUNTPOINT until SIGINT or SIGTERM, then unmounts; 'fusermount3 -u MOUNTPOINT'
also ends it. It stays in the foreground (run it under a supervisor or with &).

Every file in CIPHERDIR is a tencrypt file with its own header and key
(docs/FORMAT.md), so one file copied out of CIPHERDIR decrypts with 'tencrypt
file decrypt'; names are encrypted per directory (docs/NAMES.md). A file
created through the mount gets a fresh key wrapped under the tenant's current
KEK. Unwrapped file keys are cached in memory while mounted (--key-cache);
each unwrap is written to the audit log. A block that fails authentication
reads as EIO and is logged with the file and block number. What the mount
supports and what an observer of CIPHERDIR learns: docs/MOUNT.md.`,
		Example: `  tencrypt volume init /srv/blue.enc --tenant blue
  tencrypt mount /srv/blue.enc /mnt/blue &
  cp report.pdf /mnt/blue/
  fusermount3 -u /mnt/blue
  rsync -a /srv/blue.enc/ backup:/blue.enc/`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				return runMount(ctx, cmd, p, cfg, args[0], args[1], f)
			})
		},
	}
	bindKeysFlags(cmd)
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant of the volume (default: the one in its configuration; a different one is refused)")
	cmd.Flags().BoolVar(&f.allowOther, "allow-other", false, "let other users use the mount, with kernel permission checks")
	cmd.Flags().BoolVar(&f.debug, "debug", false, "log every FUSE request")
	cmd.Flags().IntVar(&f.keyCache, "key-cache", fusefs.DefaultKeyCache, "unwrapped file keys kept in memory (0 disables the cache)")
	cmd.Flags().IntVar(&f.maxWrite, "max-write", 1<<20, "largest FUSE read and write request in bytes (the kernel allows up to 1 MiB)")
	return cmd
}

func runMount(ctx context.Context, cmd *cobra.Command, p keys.KEKProvider, cfg keysConfig, cipherDir, mountpoint string, f mountFlags) error {
	v, err := volnames.LoadVolume(cipherDir)
	if err != nil {
		return err
	}
	if f.tenant != "" && f.tenant != v.Tenant {
		return usageError{fmt.Errorf("--tenant %s: the volume %s belongs to tenant %s", f.tenant, cipherDir, v.Tenant)}
	}
	if fi, err := os.Stat(mountpoint); err != nil || !fi.IsDir() {
		return usageError{fmt.Errorf("mount point %s is not a directory: create it first", mountpoint)}
	}
	env, closeEnv, err := fileEnvelope(p, cfg)
	if err != nil {
		return err
	}
	defer closeEnv()
	who := caller("mount")
	tr, err := v.Transform(ctx, env, who)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	if os.Getenv("GOGC") == "" {
		// Opening or creating a file allocates its block buffers; with the
		// default GOGC=100 and a small heap, creating many small files
		// spent a tenth of its CPU in the collector. 400 measured ~15%
		// more files/s (tar -x of 4 KiB files) for a few MiB more heap.
		debug.SetGCPercent(400)
	}
	cache := f.keyCache
	if cache == 0 {
		cache = -1
	}
	fsys, err := fusefs.New(fusefs.Config{CipherDir: cipherDir, Tenant: v.Tenant, Envelope: env, Names: tr, Caller: who, KeyCache: cache, Log: log})
	if err != nil {
		return err
	}
	defer fsys.Close()
	srv, err := fsys.Mount(mountpoint, fusefs.MountOptions{AllowOther: f.allowOther, Debug: f.debug, MaxWrite: f.maxWrite})
	if err != nil {
		return fmt.Errorf("%w: %w", errMountFailed, err)
	}
	log.Info("mounted", "cipher_dir", cipherDir, "mountpoint", mountpoint, "tenant", v.Tenant)
	done := make(chan struct{})
	go func() { srv.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("unmounted from outside", "mountpoint", mountpoint)
	case <-ctx.Done():
		unmount(srv.Unmount, mountpoint, done, log)
	}
	st := fsys.Stats()
	log.Info("stopped", "unwraps", st.Unwraps.Load(), "key_cache_hits", st.CacheHits.Load(), "new_keys", st.NewKeys.Load(),
		"corrupt_blocks", st.CorruptBlocks.Load(), "bad_names", st.BadNames.Load())
	return nil
}

// unmount unmounts on a signal. A busy mount (a process has its working
// directory or a file open in it) is retried for a few seconds, then
// detached lazily so that the process can exit.
func unmount(um func() error, mountpoint string, done <-chan struct{}, log *slog.Logger) {
	var err error
	for range 10 {
		if err = um(); err == nil {
			<-done
			log.Info("unmounted", "mountpoint", mountpoint)
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	log.Warn("mount busy; detaching it lazily (it goes away when the last user leaves)", "mountpoint", mountpoint, "err", err)
	if out, lerr := exec.Command("fusermount3", "-uz", mountpoint).CombinedOutput(); lerr != nil {
		log.Error("lazy unmount failed", "err", lerr, "output", string(out))
		return
	}
	<-done
}
