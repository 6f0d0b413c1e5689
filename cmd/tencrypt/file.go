package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/internal/exitcodes"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/local"
	"github.com/tencrypt/tencrypt/keys/pkcs11"
	"github.com/tencrypt/tencrypt/rest/format"
)

func init() {
	subcommands = append(subcommands, newFileCmd)
	registerErrorCode(format.ErrAuth, exitcodes.AuthFailed)
	// A header that is not well formed after a valid magic is a damaged or
	// tampered file, not a foreign one.
	registerErrorCode(format.ErrMalformed, exitcodes.AuthFailed)
	registerErrorCode(format.ErrNotTencrypt, exitcodes.NotTencrypt)
	registerErrorCode(format.ErrUnknownVersion, exitcodes.UnknownFormat)
	registerErrorCode(syscall.ENOSPC, exitcodes.NoSpace)
	registerErrorCode(errOutputExists, exitcodes.Usage)
}

// errOutputExists: an output file is already there and --force was not
// given. Nothing was written.
var errOutputExists = errors.New("output exists (use --force to replace it)")

// fileSuffix is added by encrypt and removed by decrypt.
const fileSuffix = ".tenc"

// copyBufSize is the buffer between input and the format's reader or
// writer: 64 blocks, so each read(2) or write(2) moves 256 KiB.
const copyBufSize = 64 * format.BlockSize

// progressMin is the input size above which progress is shown on a
// terminal without --progress.
const progressMin = 64 << 20

type fileFlags struct {
	recursive bool
	force     bool
	progress  bool
	output    string
	tenant    string
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
	cmd.Flags().BoolVarP(&f.recursive, "recursive", "r", false, "process directories and everything under them")
	cmd.Flags().BoolVar(&f.force, "force", false, "replace existing output files")
	cmd.Flags().BoolVar(&f.progress, "progress", false, "show progress on stderr (default: on a terminal, for inputs over 64 MiB)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "", `output file, or directory with -r or several inputs; "-" for stdout`)
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
				tenant := f.tenant
				if tenant == "" {
					tenant = scopedTenant(cfg)
				}
				if tenant == "" {
					return usageError{errors.New("encrypt needs --tenant (or a tenant-scoped backend configuration)")}
				}
				if err := keys.ValidTenant(tenant); err != nil {
					return usageError{fmt.Errorf("--tenant %q: %w", tenant, err)}
				}
				env, closeEnv, err := fileEnvelope(p, cfg)
				if err != nil {
					return err
				}
				defer closeEnv()
				jobs, err := planJobs(args, &f, true)
				if err != nil {
					return err
				}
				return runJobs(cmd, jobs, &f, func(ctx context.Context, in io.Reader, out io.Writer, src string) error {
					return encryptStream(ctx, env, tenant, in, out, src)
				})
			})
		},
	}
	f.bindIO(cmd)
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant whose KEK wraps the files' keys (a DNS-1123 label)")
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
			if f.tenant != "" {
				if err := keys.ValidTenant(f.tenant); err != nil {
					return usageError{fmt.Errorf("--tenant %q: %w", f.tenant, err)}
				}
			}
			return withKeys(cmd, func(ctx context.Context, p keys.KEKProvider, cfg keysConfig) error {
				env, closeEnv, err := fileEnvelope(p, cfg)
				if err != nil {
					return err
				}
				defer closeEnv()
				jobs, err := planJobs(args, &f, false)
				if err != nil {
					return err
				}
				return runJobs(cmd, jobs, &f, func(ctx context.Context, in io.Reader, out io.Writer, src string) error {
					return decryptStream(ctx, fileUnwrapper(ctx, env, f.tenant, "file decrypt"), in, out, src)
				})
			})
		},
	}
	f.bindIO(cmd)
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "only decrypt files of this tenant")
	return cmd
}

// scopedTenant is the tenant a tenant-scoped backend configuration names.
func scopedTenant(cfg keysConfig) string {
	switch cfg.Backend {
	case local.Name:
		return cfg.Local.Tenant
	case pkcs11.Name:
		return cfg.PKCS11.Tenant
	}
	return ""
}

// fileEnvelope opens the audit log and returns an envelope over p.
func fileEnvelope(p keys.KEKProvider, cfg keysConfig) (*keys.Envelope, func(), error) {
	audit, err := keys.OpenAuditFile(cfg.AuditLog)
	if err != nil {
		return nil, nil, err
	}
	return keys.NewEnvelope(p, audit, time.Now), func() { audit.Close() }, nil
}

// fileUnwrapper unwraps file keys through env, refusing other tenants than
// tenant when it is set.
func fileUnwrapper(ctx context.Context, env *keys.Envelope, tenant, cmd string) format.Unwrapper {
	return func(wk keys.WrappedKey) (keys.DEK, error) {
		if tenant != "" && wk.Tenant != tenant {
			return keys.DEK{}, fmt.Errorf("the file belongs to tenant %q, not %q: %w", wk.Tenant, tenant, keys.ErrPermissionDenied)
		}
		return env.Unwrap(ctx, wk, format.Purpose, caller(cmd))
	}
}

// ctxReader ends a copy when ctx is cancelled (Ctrl-C, SIGTERM). It also
// hides the reader's WriteTo, so io.CopyBuffer uses our large buffer.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func encryptStream(ctx context.Context, env *keys.Envelope, tenant string, in io.Reader, out io.Writer, src string) error {
	dek, wk, err := env.NewDEK(ctx, tenant, format.Purpose)
	if err != nil {
		return err
	}
	defer dek.Zero()
	w, err := format.NewWriter(out, &dek, wk, format.WithPath(src))
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(w, ctxReader{ctx, in}, make([]byte, copyBufSize)); err != nil {
		return err
	}
	return w.Close()
}

func decryptStream(ctx context.Context, unwrap format.Unwrapper, in io.Reader, out io.Writer, src string) error {
	r, err := format.NewReader(in, unwrap, format.WithPath(src))
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(out, ctxReader{ctx, r}, make([]byte, copyBufSize))
	return err
}

// fileJob is one file to process, or one directory to create (dir).
type fileJob struct {
	src, dst string
	dir      bool
	perm     fs.FileMode
}

// planJobs turns the arguments into jobs, checking them all before any
// work starts.
func planJobs(args []string, f *fileFlags, encrypt bool) ([]fileJob, error) {
	outName := func(src string) (string, error) {
		if encrypt {
			return src + fileSuffix, nil
		}
		if !strings.HasSuffix(src, fileSuffix) || len(filepath.Base(src)) == len(fileSuffix) {
			return "", usageError{fmt.Errorf("%s does not end in %s: name the output with -o", src, fileSuffix)}
		}
		return strings.TrimSuffix(src, fileSuffix), nil
	}
	outDir := false
	if f.output != "" && f.output != "-" {
		fi, err := os.Stat(f.output)
		outDir = err == nil && fi.IsDir()
	}
	if len(args) > 1 && f.output != "" && !outDir {
		if f.output == "-" {
			return nil, usageError{errors.New("-o - takes a single source")}
		}
		return nil, usageError{fmt.Errorf("-o %s: with several sources, -o must be an existing directory", f.output)}
	}
	// Encrypted files are often left world-readable; the plaintext made from
	// them gets their mode less the umask, as a newly created file would.
	mode := func(m fs.FileMode) fs.FileMode { return m.Perm() }
	if !encrypt {
		mask := processUmask()
		mode = func(m fs.FileMode) fs.FileMode { return m.Perm() &^ mask }
	}
	var jobs []fileJob
	for _, src := range args {
		if src == "-" {
			if len(args) > 1 {
				return nil, usageError{errors.New(`"-" (stdin) must be the only source`)}
			}
			dst := f.output
			if dst == "" {
				dst = "-"
			}
			jobs = append(jobs, fileJob{src: "-", dst: dst, perm: 0o600})
			continue
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, usageError{err}
		}
		if !fi.IsDir() {
			var dst string
			switch {
			case f.output == "-" || (f.output != "" && !outDir):
				dst = f.output
			case outDir:
				name, err := outName(filepath.Base(src))
				if err != nil {
					return nil, err
				}
				dst = filepath.Join(f.output, name)
			default:
				if dst, err = outName(src); err != nil {
					return nil, err
				}
			}
			jobs = append(jobs, fileJob{src: src, dst: dst, perm: mode(fi.Mode())})
			continue
		}
		if !f.recursive {
			return nil, usageError{fmt.Errorf("%s is a directory: use -r", src)}
		}
		if f.output == "-" {
			return nil, usageError{errors.New("-o - cannot take a directory")}
		}
		root := src
		if f.output != "" {
			root = f.output
			if len(args) > 1 {
				root = filepath.Join(f.output, filepath.Base(filepath.Clean(src)))
			}
		}
		err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(src, path)
			info, err := d.Info()
			if err != nil {
				return err
			}
			switch {
			case d.IsDir():
				if root != src {
					jobs = append(jobs, fileJob{dst: filepath.Join(root, rel), dir: true, perm: mode(info.Mode())})
				}
			case !d.Type().IsRegular():
				// Symbolic links and special files are not followed or copied.
			case strings.HasSuffix(path, fileSuffix) == encrypt:
				// encrypt skips .tenc files; decrypt takes only them.
			default:
				name, err := outName(rel)
				if err != nil {
					return err
				}
				jobs = append(jobs, fileJob{src: path, dst: filepath.Join(root, name), perm: mode(info.Mode())})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if !f.force {
		for _, j := range jobs {
			if j.dir || j.dst == "-" {
				continue
			}
			if _, err := os.Lstat(j.dst); err == nil {
				return nil, fmt.Errorf("%s: %w; nothing was written", j.dst, errOutputExists)
			}
		}
	}
	return jobs, nil
}

// streamFunc encrypts or decrypts in to out; src names the input in errors.
type streamFunc func(ctx context.Context, in io.Reader, out io.Writer, src string) error

// runJobs runs every job and returns the first error; a failed job leaves
// no output.
func runJobs(cmd *cobra.Command, jobs []fileJob, f *fileFlags, fn streamFunc) error {
	ctx := cmd.Context()
	var first error
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if j.dir {
			err = os.MkdirAll(j.dst, j.perm|0o700)
		} else {
			err = runJob(cmd, j, f, fn)
		}
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "tencrypt: %v\n", err)
			if first == nil {
				first = err
			}
		}
	}
	if first != nil {
		return exitError{exitCode(first)}
	}
	return nil
}

func runJob(cmd *cobra.Command, j fileJob, f *fileFlags, fn streamFunc) error {
	ctx := cmd.Context()
	var in io.Reader
	size := int64(-1)
	name := j.src
	if j.src == "-" {
		in, name = cmd.InOrStdin(), "(stdin)"
	} else {
		file, err := os.Open(j.src)
		if err != nil {
			return err
		}
		defer file.Close()
		if fi, err := file.Stat(); err == nil {
			size = fi.Size()
		}
		ar := newAsyncReader(file)
		defer ar.Close()
		in = ar
	}
	if p := newProgress(cmd.ErrOrStderr(), name, size, f.progress); p != nil {
		defer p.done()
		in = io.TeeReader(in, p)
	}
	if j.dst == "-" {
		return fn(ctx, in, cmd.OutOrStdout(), name)
	}
	if err := os.MkdirAll(filepath.Dir(j.dst), 0o755); err != nil {
		return err
	}
	return writeAtomic(j.dst, j.perm, f.force, func(w io.Writer) error { return fn(ctx, in, w, name) })
}

// processUmask reads the process's umask from /proc without changing it
// (umask(2) can only be read by setting it). If /proc cannot tell, it
// assumes the strictest sensible mask, 077.
func processUmask() fs.FileMode {
	data, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if m, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32); err == nil {
					return fs.FileMode(m)
				}
			}
		}
	}
	return 0o077
}

// writeAtomic makes dst hold what fn writes, or leaves it untouched
// (internal/atomicfile: a temporary file synced and renamed, without
// replacing an existing dst unless force). A full disk or any other failure
// removes the temporary file. Writes go through an asyncWriter so that disk
// work overlaps the crypto.
func writeAtomic(dst string, perm fs.FileMode, force bool, fn func(io.Writer) error) error {
	err := atomicfile.WriteFunc(dst, atomicfile.Options{Perm: perm, Replace: force}, func(w io.Writer) error {
		aw := newAsyncWriter(w)
		err := fn(aw)
		if cerr := aw.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if !force && errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w; nothing was written", dst, errOutputExists)
	}
	return err
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

// inspectResult is what inspect prints: the header's public fields and the
// sizes, never a key. The header is not authenticated without the key, so
// these are the file's claims.
type inspectResult struct {
	File          string `json:"file"`
	FormatVersion int    `json:"format_version"`
	Suite         string `json:"suite"`
	SuiteID       int    `json:"suite_id"`
	BlockSize     int    `json:"block_size"`
	FileID        string `json:"file_id"`
	Tenant        string `json:"tenant"`
	Provider      string `json:"provider"`
	Purpose       string `json:"purpose"`
	KEKVersion    uint32 `json:"kek_version"`
	HeaderSize    int    `json:"header_size"`
	FileSize      int64  `json:"file_size"`
	PlaintextSize int64  `json:"plaintext_size"`
	Blocks        int64  `json:"blocks"`
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
			files, err := tencFiles(args, recursive)
			if err != nil {
				return err
			}
			var results []inspectResult
			var first error
			for _, file := range files {
				r, err := inspectFile(cmd, file)
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

// tencFiles expands directories (with recursive) into the regular files
// under them that start with the tencrypt magic.
func tencFiles(args []string, recursive bool) ([]string, error) {
	var out []string
	for _, a := range args {
		fi, err := os.Stat(a)
		if a == "-" {
			out = append(out, a)
			continue
		}
		if err != nil {
			return nil, usageError{err}
		}
		if !fi.IsDir() {
			out = append(out, a)
			continue
		}
		if !recursive {
			return nil, usageError{fmt.Errorf("%s is a directory: use -r", a)}
		}
		err = filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if isTencrypt(path) {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func isTencrypt(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [len(format.Magic)]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && string(b[:]) == format.Magic
}

func inspectFile(cmd *cobra.Command, file string) (inspectResult, error) {
	var in io.Reader = cmd.InOrStdin()
	size := int64(-1)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return inspectResult{}, err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return inspectResult{}, err
		}
		in, size = f, fi.Size()
	}
	h, err := format.ReadHeader(in)
	if err != nil {
		return inspectResult{}, fmt.Errorf("%s: %w", file, err)
	}
	if size < 0 {
		n, err := io.Copy(io.Discard, in)
		if err != nil {
			return inspectResult{}, err
		}
		size = int64(h.Size()) + n
	}
	ps, err := format.PlaintextSize(h.Size(), size)
	if ce := (*format.CorruptError)(nil); errors.As(err, &ce) {
		ce.Path = file
		return inspectResult{}, ce
	}
	return inspectResult{
		File: file, FormatVersion: int(h.Version), Suite: h.Suite.String(), SuiteID: int(h.Suite), BlockSize: h.BlockSize,
		FileID: hex.EncodeToString(h.FileID[:]), Tenant: h.Key.Tenant, Provider: h.Key.Provider, Purpose: h.Key.Purpose,
		KEKVersion: h.Key.KEKVersion, HeaderSize: h.Size(), FileSize: size, PlaintextSize: ps,
		Blocks: max(1, (ps+format.BlockSize-1)/format.BlockSize),
	}, nil
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
			files, err := tencFiles(args, recursive)
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
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "walk directories and rewrap every tencrypt file under them")
	cmd.Flags().BoolVar(&copyAlways, "copy", false, "always rewrite through a temporary file, never in place")
	return cmd
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

// fileBenchResult is what file bench reports; rates in MB/s (10^6 bytes).
type fileBenchResult struct {
	Bytes       int64   `json:"bytes"`
	Dir         string  `json:"dir"`
	Runs        int     `json:"runs"`
	EncryptMBps float64 `json:"encrypt_mb_per_s"`
	DecryptMBps float64 `json:"decrypt_mb_per_s"`
	RawSealMBps float64 `json:"raw_aes_gcm_seal_mb_per_s"`
	RawOpenMBps float64 `json:"raw_aes_gcm_open_mb_per_s"`
	// CopyMBps is a plain copy of the file through the same I/O path: the
	// rate the disk and kernel allow without any crypto.
	CopyMBps     float64 `json:"copy_mb_per_s"`
	EncryptRatio float64 `json:"encrypt_ratio"`
	DecryptRatio float64 `json:"decrypt_ratio"`
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
			res, err := fileBench(cmd.Context(), dir, size<<20, runs)
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

func fileBench(ctx context.Context, parent string, size int64, runs int) (res fileBenchResult, err error) {
	dir, err := os.MkdirTemp(parent, "tencrypt-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	src, enc, dec := filepath.Join(dir, "src"), filepath.Join(dir, "src.tenc"), filepath.Join(dir, "dec")
	err = writeAtomic(src, 0o600, false, func(w io.Writer) error {
		_, err := io.CopyN(w, rand.Reader, size)
		return err
	})
	if err != nil {
		return res, err
	}
	var dek keys.DEK
	_, _ = rand.Read(dek[:])
	defer dek.Zero()
	wkct := make([]byte, 60)
	_, _ = rand.Read(wkct)
	wk := keys.WrappedKey{Provider: "bench", Tenant: "bench", Purpose: format.Purpose, KEKVersion: 1, Ciphertext: wkct}
	unwrap := func(keys.WrappedKey) (keys.DEK, error) { return dek, nil }

	timeIt := func(fn func() error) (time.Duration, error) {
		start := time.Now()
		err := fn()
		return time.Since(start), err
	}
	through := func(from, to string, fn func(in io.Reader, out io.Writer) error) func() error {
		return func() error {
			f, err := os.Open(from)
			if err != nil {
				return err
			}
			defer f.Close()
			in := newAsyncReader(f)
			defer in.Close()
			return writeAtomic(to, 0o600, true, func(w io.Writer) error { return fn(in, w) })
		}
	}
	encrypt := through(src, enc, func(in io.Reader, out io.Writer) error {
		w, err := format.NewWriter(out, &dek, wk)
		if err != nil {
			return err
		}
		if _, err := io.CopyBuffer(w, ctxReader{ctx, in}, make([]byte, copyBufSize)); err != nil {
			return err
		}
		return w.Close()
	})
	decrypt := through(enc, dec, func(in io.Reader, out io.Writer) error {
		return decryptStream(ctx, unwrap, in, out, enc)
	})
	raw := func(seal bool) func() error {
		return func() error {
			g := cryptocore.NewGCMBaseline(format.BlockSize)
			for range size / format.BlockSize {
				if seal {
					g.Seal()
				} else if err := g.Open(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	copyPlain := through(src, filepath.Join(dir, "copy"), func(in io.Reader, out io.Writer) error {
		_, err := io.CopyBuffer(out, ctxReader{ctx, in}, make([]byte, copyBufSize))
		return err
	})
	best := [5]time.Duration{}
	for range runs {
		for i, fn := range []func() error{raw(true), encrypt, raw(false), decrypt, copyPlain} {
			d, err := timeIt(fn)
			if err != nil {
				return res, err
			}
			if best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	if err := sameFiles(src, dec); err != nil {
		return res, err
	}
	rate := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	res = fileBenchResult{Bytes: size, Dir: parent, Runs: runs,
		RawSealMBps: rate(best[0]), EncryptMBps: rate(best[1]), RawOpenMBps: rate(best[2]), DecryptMBps: rate(best[3]), CopyMBps: rate(best[4])}
	res.EncryptRatio = res.EncryptMBps / res.RawSealMBps
	res.DecryptRatio = res.DecryptMBps / res.RawOpenMBps
	return res, nil
}

// sameFiles checks the benchmark's round trip.
func sameFiles(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, copyBufSize), make([]byte, copyBufSize)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("BUG: file bench: decrypted file differs from the source")
		}
		if erra != nil || errb != nil {
			return nil
		}
	}
}

// asyncWriter hands writes to a goroutine, so that the kernel's side of
// write(2) (copying into the page cache, allocating pages) runs on the other
// core while the caller encrypts or decrypts the next buffer: without it a
// file's write cost adds to the crypto cost instead of overlapping it
// (measured with 'tencrypt file bench', docs/BENCHMARKS.md). The copy into
// its own buffers is the price. After a write error it keeps taking buffers
// without writing them, so Write never blocks, and reports the error.
type asyncWriter struct {
	w      io.Writer
	cur    []byte
	free   chan []byte
	full   chan []byte
	done   chan struct{}
	err    error       // written by the goroutine before failed is set
	failed atomic.Bool // a write failed
	closed bool
}

const (
	asyncBufSize = 1 << 20
	asyncBufs    = 3
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, free: make(chan []byte, asyncBufs), full: make(chan []byte, asyncBufs), done: make(chan struct{})}
	for range asyncBufs - 1 {
		a.free <- make([]byte, 0, asyncBufSize)
	}
	a.cur = make([]byte, 0, asyncBufSize)
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for b := range a.full {
		if !a.failed.Load() {
			if _, err := a.w.Write(b); err != nil {
				a.err = err
				a.failed.Store(true)
			}
		}
		a.free <- b[:0]
	}
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.failed.Load() {
		return 0, a.err
	}
	n := len(p)
	for len(p) > 0 {
		c := min(len(p), cap(a.cur)-len(a.cur))
		a.cur = append(a.cur, p[:c]...)
		p = p[c:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// Close writes what is buffered, stops the goroutine and returns the first
// write error. It does not close the underlying writer.
func (a *asyncWriter) Close() error {
	if !a.closed {
		a.closed = true
		if len(a.cur) > 0 {
			a.full <- a.cur
		}
		close(a.full)
	}
	<-a.done
	return a.err
}

// asyncReader reads ahead on a goroutine, so that the kernel's side of
// read(2) overlaps the caller's crypto, as asyncWriter does for writes.
// Close stops the goroutine (unless it is blocked in a read of its own).
type asyncReader struct {
	full chan readChunk
	free chan []byte
	stop chan struct{}
	cur  []byte
	pos  int
	err  error
}

type readChunk struct {
	b   []byte
	err error
}

func newAsyncReader(r io.Reader) *asyncReader {
	a := &asyncReader{full: make(chan readChunk, asyncBufs), free: make(chan []byte, asyncBufs), stop: make(chan struct{})}
	for range asyncBufs {
		a.free <- make([]byte, asyncBufSize)
	}
	go func() {
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.stop:
				return
			}
			n, err := r.Read(b[:cap(b)])
			select {
			case a.full <- readChunk{b[:n], err}:
			case <-a.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *asyncReader) Read(p []byte) (int, error) {
	for a.pos == len(a.cur) {
		if a.err != nil {
			return 0, a.err
		}
		if a.cur != nil {
			a.free <- a.cur
		}
		c := <-a.full
		a.cur, a.pos, a.err = c.b, 0, c.err
	}
	n := copy(p, a.cur[a.pos:])
	a.pos += n
	return n, nil
}

func (a *asyncReader) Close() { close(a.stop) }
