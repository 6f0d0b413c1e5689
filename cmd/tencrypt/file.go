package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/filecrypt"
	"github.com/tencrypt/tencrypt/rest/format"
)

// progressMin is the input size above which progress is shown on a
// terminal without --progress.
const progressMin = 64 << 20

// fileFlags are the flags of file encrypt and decrypt: the package's Params
// and how to show progress.
type fileFlags struct {
	filecrypt.Params
	progress bool
}

func newFileCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "file",
		Short: "Encrypt and decrypt files in tencrypt's portable per-file format",
		Long: `An encrypted file carries everything needed to decrypt it except the key: a
header naming the tenant, the key backend and the KEK version, with the file's
own data-encryption key wrapped under the tenant's KEK, then the content in
authenticated 4 KiB blocks (docs/FORMAT.md). It can be copied with rsync, tar,
zip or a backup tool and decrypted anywhere the tenant's key is available.

Output is written to a temporary file in the destination directory, synced
and renamed into place: a failure (a tampered block, a full disk, Ctrl-C)
leaves no partial output, and an existing output is never replaced without
--force. The sources are never changed or removed. "-" reads stdin or writes
stdout; on stdout, decrypted data is streamed block by block as each block
authenticates, so a consumer must check the exit status.

The key backend flags and variables are those of 'tencrypt keys'. Every
unwrap of a file key is written to the audit log.`,
		Example: `  export TENCRYPT_LOCAL_PATH=./keyring TENCRYPT_LOCAL_KEY_FILE=./admin.key
  tencrypt file encrypt --tenant blue report.pdf          # writes report.pdf.tenc
  tencrypt file inspect report.pdf.tenc --json
  tencrypt file decrypt report.pdf.tenc -o copy.pdf
  tencrypt file encrypt --tenant blue -r data/ -o data.enc/
  tar c data.enc | ssh host tar x
  tencrypt file decrypt -r data.enc/ -o data/
  pg_dump app | tencrypt file encrypt --tenant blue - > app.sql.tenc
  tencrypt keys rotate blue && tencrypt file rewrap -r data.enc/`,
	}
	bindKeysFlags(cmd)
	cmd.PersistentFlags().Bool("json", false, "print one JSON document on stdout instead of text")
	cmd.AddCommand(newFileEncryptCmd(), newFileDecryptCmd(), newFileInspectCmd(), newFileRewrapCmd(), newFileBenchCmd())
	return cmd
}

func (f *fileFlags) bindIO(cmd *cobra.Command) {
	cmd.Flags().BoolVarP(&f.Recursive, "recursive", "r", false, "process directories and everything under them")
	cmd.Flags().BoolVar(&f.Force, "force", false, "replace existing output files")
	cmd.Flags().BoolVar(&f.progress, "progress", false, "show progress on stderr (default: on a terminal, for inputs over 64 MiB)")
	cmd.Flags().StringVarP(&f.Output, "output", "o", "", `output file, or directory with -r or several inputs; "-" for stdout`)
}

// runIO is the command's side of a run: its streams, progress on stderr, and
// each failed file printed as it fails.
func (f *fileFlags) runIO(cmd *cobra.Command) filecrypt.IO {
	stderr := cmd.ErrOrStderr()
	return filecrypt.IO{
		Stdin:  cmd.InOrStdin(),
		Stdout: cmd.OutOrStdout(),
		Progress: func(name string, size int64) (io.Writer, func()) {
			if p := newProgress(stderr, name, size, f.progress); p != nil {
				return p, p.done
			}
			return nil, nil
		},
		OnError: func(err error) { fmt.Fprintf(stderr, "tencrypt: %v\n", err) },
	}
}

// jobsDone turns a run's error into the command's: failed files were
// printed already, so only their exit code is left to give.
func jobsDone(err error) error {
	if je := (*filecrypt.JobsError)(nil); errors.As(err, &je) {
		return exitError{exitCode(je.Err)}
	}
	return err
}

func newFileEncryptCmd() *cobra.Command {
	var f fileFlags
	cmd := &cobra.Command{
		Use:   "encrypt --tenant TENANT [-r] [-o OUT] SOURCE...",
		Short: "Encrypt files for a tenant (each under its own new key)",
		Long: `encrypt writes SOURCE.tenc beside each SOURCE, or to --output. Each file gets a
fresh data-encryption key wrapped under TENANT's current KEK. With -r,
directories are walked and their tree is recreated under --output (or
beside the originals); files already ending in .tenc are skipped, and so are
symbolic links and special files. SOURCE "-" is stdin, written to stdout
unless -o names a file.

All sources are tried; the exit code is that of the first failure.`,
		Example: `  tencrypt file encrypt --tenant blue notes.txt
  tencrypt file encrypt --tenant blue -r photos/ -o photos.enc/
  tar c dir | tencrypt file encrypt --tenant blue - -o dir.tar.tenc`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				if f.Tenant == "" {
					f.Tenant = cfg.ScopedTenant()
				}
				if f.Tenant == "" {
					return usageError{errors.New("encrypt needs --tenant (or a tenant-scoped backend configuration)")}
				}
				if err := keys.ValidTenant(f.Tenant); err != nil {
					return usageError{fmt.Errorf("--tenant %q: %w", f.Tenant, err)}
				}
				env, closeEnv, err := fileEnvelope(p, cfg)
				if err != nil {
					return err
				}
				defer closeEnv()
				return jobsDone(filecrypt.Encrypt(ctx, env, f.Params, args, f.runIO(cmd)))
			})
		},
	}
	f.bindIO(cmd)
	cmd.Flags().StringVar(&f.Tenant, "tenant", "", "tenant whose KEK wraps the files' keys (a DNS-1123 label)")
	return cmd
}

func newFileDecryptCmd() *cobra.Command {
	var f fileFlags
	cmd := &cobra.Command{
		Use:   "decrypt [-r] [-o OUT] FILE...",
		Short: "Decrypt tencrypt files",
		Long: `decrypt writes each FILE without its .tenc suffix, or to --output; a FILE
without the suffix needs -o. Every block is authenticated before its bytes
are written; a file that was tampered with, cut short or extended fails with
exit code 4 and leaves no output. The tenant and key come from each file's
header; --tenant refuses files of any other tenant. With -r, directories are
walked and their .tenc files decrypted into the same tree under --output.
Decrypted files get their encrypted file's mode less the umask.

All files are tried; the exit code is that of the first failure.`,
		Example: `  tencrypt file decrypt notes.txt.tenc
  tencrypt file decrypt -r photos.enc/ -o photos/
  tencrypt file decrypt - < dump.sql.tenc | psql app`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.Tenant != "" {
				if err := keys.ValidTenant(f.Tenant); err != nil {
					return usageError{fmt.Errorf("--tenant %q: %w", f.Tenant, err)}
				}
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				env, closeEnv, err := fileEnvelope(p, cfg)
				if err != nil {
					return err
				}
				defer closeEnv()
				f.Caller = caller("file decrypt")
				return jobsDone(filecrypt.Decrypt(ctx, env, f.Params, args, f.runIO(cmd)))
			})
		},
	}
	f.bindIO(cmd)
	cmd.Flags().StringVar(&f.Tenant, "tenant", "", "only decrypt files of this tenant")
	return cmd
}

// fileEnvelope opens the audit log and returns an envelope over p.
func fileEnvelope(p keys.KEKProvider, cfg keysConfig) (*keys.Envelope, func(), error) {
	audit, err := keys.OpenAuditFile(cfg.AuditLog)
	if err != nil {
		return nil, nil, err
	}
	return keys.NewEnvelope(p, audit, time.Now), func() { audit.Close() }, nil
}

// progress prints how much of one input was processed, at most a few times
// a second, on one terminal line.
type progress struct {
	w     io.Writer
	name  string
	size  int64
	n     int64
	last  time.Time
	shown bool
}

// newProgress returns a progress meter for an input of size bytes (-1 if
// unknown), or nil if none should be shown: only with force, or when w is
// a terminal and the input is large or of unknown size.
func newProgress(w io.Writer, name string, size int64, force bool) *progress {
	if !force {
		f, ok := w.(*os.File)
		if !ok {
			return nil
		}
		if _, isTerm := terminal(f); !isTerm || (size >= 0 && size < progressMin) {
			return nil
		}
	}
	return &progress{w: w, name: name, size: size, last: time.Now()}
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if now := time.Now(); now.Sub(p.last) >= 250*time.Millisecond {
		p.last = now
		p.print()
	}
	return len(b), nil
}

func (p *progress) print() {
	p.shown = true
	if p.size > 0 {
		fmt.Fprintf(p.w, "\r%s: %d / %d MiB (%d%%)", p.name, p.n>>20, p.size>>20, p.n*100/p.size)
	} else {
		fmt.Fprintf(p.w, "\r%s: %d MiB", p.name, p.n>>20)
	}
}

func (p *progress) done() {
	p.print()
	fmt.Fprintln(p.w)
}

func newFileInspectCmd() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "inspect [-r] FILE...",
		Short: "Print the header of encrypted files (no key needed, no secrets printed)",
		Long: `inspect prints each file's format version, cipher suite, block size, file
ID, tenant, key backend and KEK version, and its plaintext size computed from
the file size. It needs no key and opens no backend, so what it prints is
the file's claim: only decrypt authenticates it. With --json it prints one
JSON object for a single FILE, and an array otherwise. With -r, directories
are walked and every file starting with the tencrypt magic is listed.`,
		Example: `  tencrypt file inspect notes.txt.tenc
  tencrypt file inspect --json -r data.enc/ | jq '.[] | select(.kek_version < 3) | .file'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := filecrypt.Find(args, recursive)
			if err != nil {
				return err
			}
			var results []filecrypt.Info
			var first error
			for _, file := range files {
				r, err := filecrypt.Inspect(file, cmd.InOrStdin())
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "tencrypt: %v\n", err)
					if first == nil {
						first = err
					}
					continue
				}
				results = append(results, r)
			}
			var v any = results
			if len(args) == 1 && len(files) == 1 && !recursive && len(results) == 1 {
				v = results[0]
			}
			if err := report(cmd, v, func(w io.Writer) {
				for _, r := range results {
					fmt.Fprintf(w, "%s: tencrypt v%d, %s, %d-byte blocks, tenant %s, backend %s, KEK version %d, file ID %s, %d bytes of plaintext\n",
						r.File, r.FormatVersion, r.Suite, r.BlockSize, r.Tenant, r.Provider, r.KEKVersion, r.FileID, r.PlaintextSize)
				}
			}); err != nil {
				return err
			}
			if first != nil {
				return exitError{exitCode(first)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "walk directories and list every tencrypt file under them")
	return cmd
}

func newFileBenchCmd() *cobra.Command {
	var size int64
	var dir string
	var runs int
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure file encrypt and decrypt throughput against raw AES-256-GCM",
		Long: `bench writes a random file of --size MiB in a temporary directory under --dir,
then, --runs times each, encrypts it to a file and decrypts that back through
the same code path as 'file encrypt' and 'file decrypt' (temp file, fsync,
rename), copies it the same way without crypto, and seals and opens as
many bytes with raw AES-256-GCM in 4 KiB blocks, alternating so that a busy machine slows both alike. It reports the
best run of each and the ratios. The key is random and never touches a key
backend (one unwrap per file costs what 'tencrypt keys bench' measures).
Use a tmpfs (--dir /dev/shm) to measure the CPU path without the disk.`,
		Example: `  tencrypt file bench --dir /dev/shm --size 512 --json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if size < 1 || runs < 1 {
				return usageError{errors.New("file bench: --size and --runs must be at least 1")}
			}
			res, err := filecrypt.Bench(cmd.Context(), dir, size<<20, runs)
			if err != nil {
				return err
			}
			return report(cmd, res, func(w io.Writer) {
				fmt.Fprintf(w, "%d MiB in %s, best of %d\n", res.Bytes>>20, res.Dir, res.Runs)
				fmt.Fprintf(w, "encrypt %8.0f MB/s   raw AES-GCM seal %8.0f MB/s   ratio %.2f\n", res.EncryptMBps, res.RawSealMBps, res.EncryptRatio)
				fmt.Fprintf(w, "decrypt %8.0f MB/s   raw AES-GCM open %8.0f MB/s   ratio %.2f\n", res.DecryptMBps, res.RawOpenMBps, res.DecryptRatio)
				fmt.Fprintf(w, "plain copy through the same I/O path: %.0f MB/s\n", res.CopyMBps)
			})
		},
	}
	cmd.Flags().Int64Var(&size, "size", 256, "file size in MiB")
	cmd.Flags().StringVar(&dir, "dir", os.TempDir(), "directory to work in (a temporary directory is made and removed there)")
	cmd.Flags().IntVar(&runs, "runs", 3, "runs of each measurement; the best is reported")
	return cmd
}

// fileRewrapResult reports one file of rewrap.
type fileRewrapResult struct {
	File   string `json:"file"`
	Tenant string `json:"tenant,omitempty"`
	From   uint32 `json:"from_version,omitempty"`
	To     uint32 `json:"to_version,omitempty"`
	// Status is "rewrapped", "current" (already at the current version) or
	// "error".
	Status string `json:"status"`
	// Method is "in-place" (only the header bytes were rewritten) or "copy"
	// (the file was rewritten through a temporary file).
	Method string `json:"method,omitempty"`
	Error  string `json:"error,omitempty"`
}

func newFileRewrapCmd() *cobra.Command {
	var recursive, copyAlways bool
	cmd := &cobra.Command{
		Use:   "rewrap [-r] FILE...",
		Short: "Move encrypted files to their tenant's current KEK version, rewriting only the header",
		Long: `rewrap re-wraps each file's data-encryption key under the tenant's current KEK
version and writes the new header. The content blocks do not change: the DEK
is the same, only its wrapping is. Files already at the current version are
left alone.

Before writing, rewrap checks the old header's seal and that the new wrapped
key unwraps to the same DEK. When the new header has the size of the old one
(the usual case: same backend and tenant) it is written in place over the
first bytes of the file and synced; this is one write of a few hundred bytes
inside the first disk sector. Otherwise, or with --copy, the file is rewritten
through a temporary file that is synced and renamed over it, so a crash
leaves the old or the new file. Every unwrap and rewrap is audited.

Only tencrypt files are rewrapped. A volume's configuration (tencrypt.volume),
wrapped-key blob files and the transit registry hold wrapped keys too: 'keys
rewrap PATH...' moves every kind, tencrypt files included, and 'keys retire
--check' refuses while any of them is left under an old version.

All files are tried; the exit code is that of the first failure.`,
		Example: `  tencrypt keys rotate blue
  tencrypt file rewrap -r data.enc/
  tencrypt keys retire blue --min-version 2 --check data.enc/
  # A volume: its configuration too, so use keys rewrap
  tencrypt keys rewrap /srv/blue.enc && tencrypt keys retire blue --min-version 2 --check /srv/blue.enc`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFileRewrap(cmd, args, recursive, copyAlways)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "walk directories and rewrap every tencrypt file under them")
	cmd.Flags().BoolVar(&copyAlways, "copy", false, "always rewrite through a temporary file, never in place")
	return cmd
}

// runFileRewrap rewraps every tencrypt file args name, reports each, and
// fails with the exit code of the first failure.
func runFileRewrap(cmd *cobra.Command, args []string, recursive, copyAlways bool) error {
	files, err := filecrypt.Find(args, recursive)
	if err != nil {
		return err
	}
	for _, f := range files {
		if f == "-" {
			return usageError{errors.New("rewrap changes files: stdin cannot be rewrapped")}
		}
	}
	return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
		env, closeEnv, err := fileEnvelope(p, cfg)
		if err != nil {
			return err
		}
		defer closeEnv()
		m := keys.NewMover(env, caller("file rewrap"))
		var results []fileRewrapResult
		var first error
		for _, file := range files {
			r, err := rewrapTencFile(ctx, m, file, copyAlways)
			if err != nil {
				r.Status, r.Error = "error", err.Error()
				fmt.Fprintf(cmd.ErrOrStderr(), "tencrypt: %v\n", err)
				if first == nil {
					first = err
				}
			}
			results = append(results, r)
		}
		if err := report(cmd, results, func(w io.Writer) {
			for _, r := range results {
				switch r.Status {
				case "rewrapped":
					fmt.Fprintf(w, "%s: tenant %s, KEK version %d -> %d (%s)\n", r.File, r.Tenant, r.From, r.To, r.Method)
				case "current":
					fmt.Fprintf(w, "%s: tenant %s, already at current version %d\n", r.File, r.Tenant, r.From)
				}
			}
		}); err != nil {
			return err
		}
		if first != nil {
			return exitError{exitCode(first)}
		}
		return nil
	})
}

// rewrapTencFile moves one tencrypt file's key through format.Holder, the
// path 'keys rewrap' takes too.
func rewrapTencFile(ctx context.Context, m *keys.Mover, file string, copyAlways bool) (fileRewrapResult, error) {
	r := fileRewrapResult{File: file}
	moved, err := format.Holder{Copy: copyAlways}.Rewrap(ctx, file, m)
	if err != nil {
		return r, err
	}
	mv := moved[0]
	r.Tenant, r.From, r.To, r.Status, r.Method = mv.Tenant, mv.From, mv.To, mv.Status, mv.Method
	return r, nil
}
