package filecrypt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tencrypt/tencrypt/internal/atomicfile"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/format"
)

// IO is where a run's standard streams are and whom it tells about progress
// and failures. Every field may be left zero.
type IO struct {
	// Stdin and Stdout stand for "-" as a source or output.
	Stdin  io.Reader
	Stdout io.Writer
	// Progress, if set, is called as each input is opened, with its name
	// and size (-1 if unknown). Every byte read from the input is then
	// written to the returned writer (nil: none), which must not keep the
	// slices it is given, and done (if not nil) is called when the job
	// ends.
	Progress func(name string, size int64) (w io.Writer, done func())
	// OnError is told of each failed job as it fails; the other jobs are
	// still tried.
	OnError func(err error)
}

// StreamFunc encrypts or decrypts in to out; src names the input in errors.
type StreamFunc func(ctx context.Context, in io.Reader, out io.Writer, src string) error

// Encrypt plans sources (Plan) and encrypts each file under a fresh DEK
// wrapped under p.Tenant's current KEK. A planning error returns before
// anything is written; failed jobs leave no output and make a *JobsError.
func Encrypt(ctx context.Context, env *keys.Envelope, p Params, sources []string, o IO) error {
	if err := keys.ValidTenant(p.Tenant); err != nil {
		return usageError{fmt.Errorf("tenant %q: %w", p.Tenant, err)}
	}
	jobs, err := Plan(sources, p, OpEncrypt)
	if err != nil {
		return err
	}
	return Run(ctx, jobs, p.Force, o, func(ctx context.Context, in io.Reader, out io.Writer, src string) error {
		return EncryptStream(ctx, env, p.Tenant, in, out, src)
	})
}

// Decrypt plans files (Plan) and decrypts each, unwrapping its key through
// env (refusing other tenants than p.Tenant when it is set). Every block is
// authenticated before its bytes are written; a failed job leaves no output
// unless it wrote to Stdout.
func Decrypt(ctx context.Context, env *keys.Envelope, p Params, files []string, o IO) error {
	jobs, err := Plan(files, p, OpDecrypt)
	if err != nil {
		return err
	}
	unwrap := Unwrapper(ctx, env, p.Tenant, p.Caller)
	return Run(ctx, jobs, p.Force, o, func(ctx context.Context, in io.Reader, out io.Writer, src string) error {
		return DecryptStream(ctx, unwrap, in, out, src)
	})
}

// Unwrapper unwraps file keys through env for caller, refusing files of
// other tenants than tenant when it is set.
func Unwrapper(ctx context.Context, env *keys.Envelope, tenant, caller string) format.Unwrapper {
	return func(wk keys.WrappedKey) (keys.DEK, error) {
		if tenant != "" && wk.Tenant != tenant {
			return keys.DEK{}, fmt.Errorf("the file belongs to tenant %q, not %q: %w", wk.Tenant, tenant, keys.ErrPermissionDenied)
		}
		return env.Unwrap(ctx, wk, format.Purpose, caller)
	}
}

// Run runs every job in order, giving each failure to o.OnError, and
// returns a *JobsError naming the first; a failed job leaves no output. It
// stops between jobs when ctx is cancelled and returns ctx's error.
func Run(ctx context.Context, jobs []Job, force bool, o IO, fn StreamFunc) error {
	var je *JobsError
	for _, j := range jobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if j.Dir {
			err = os.MkdirAll(j.Dst, j.Perm|0o700)
		} else {
			err = runJob(ctx, j, force, o, fn)
		}
		if err != nil {
			if o.OnError != nil {
				o.OnError(err)
			}
			if je == nil {
				je = &JobsError{Err: err}
			}
			je.Failed++
		}
	}
	if je != nil {
		return je
	}
	return nil
}

func runJob(ctx context.Context, j Job, force bool, o IO, fn StreamFunc) error {
	var in io.Reader
	size := int64(-1)
	name := j.Src
	if j.Src == "-" {
		in, name = o.Stdin, "(stdin)"
		if in == nil {
			in = eofReader{}
		}
	} else {
		file, err := os.Open(j.Src)
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
	if o.Progress != nil {
		if w, done := o.Progress(name, size); w != nil {
			if done != nil {
				defer done()
			}
			in = io.TeeReader(in, w)
		}
	}
	if j.Dst == "-" {
		out := o.Stdout
		if out == nil {
			out = io.Discard
		}
		return fn(ctx, in, out, name)
	}
	if err := os.MkdirAll(filepath.Dir(j.Dst), 0o755); err != nil {
		return err
	}
	return WriteAtomic(j.Dst, j.Perm, force, func(w io.Writer) error { return fn(ctx, in, w, name) })
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

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

// EncryptStream encrypts in to out under a new DEK for tenant; src names
// the input in errors. It stops when ctx is cancelled.
func EncryptStream(ctx context.Context, env *keys.Envelope, tenant string, in io.Reader, out io.Writer, src string) error {
	dek, wk, err := env.NewDEK(ctx, tenant, format.Purpose)
	if err != nil {
		return err
	}
	defer dek.Zero()
	return encryptWith(ctx, &dek, wk, in, out, format.WithPath(src))
}

func encryptWith(ctx context.Context, dek *keys.DEK, wk keys.WrappedKey, in io.Reader, out io.Writer, opts ...format.Option) error {
	w, err := format.NewWriter(out, dek, wk, opts...)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(w, ctxReader{ctx, in}, make([]byte, copyBufSize)); err != nil {
		return err
	}
	return w.Close()
}

// DecryptStream decrypts in to out, unwrapping the file's key with unwrap;
// src names the input in errors. Only authenticated bytes reach out; on an
// error out may hold the blocks before the bad one (write to a temporary
// file, as WriteAtomic does, to keep nothing). It stops when ctx is
// cancelled.
func DecryptStream(ctx context.Context, unwrap format.Unwrapper, in io.Reader, out io.Writer, src string) error {
	r, err := format.NewReader(in, unwrap, format.WithPath(src))
	if err != nil {
		return err
	}
	_, err = io.CopyBuffer(out, ctxReader{ctx, r}, make([]byte, copyBufSize))
	return err
}

// WriteAtomic makes dst hold what fn writes, or leaves it untouched
// (internal/atomicfile: an unnamed O_TMPFILE file, or a hidden named one
// where the file system lacks O_TMPFILE, synced and then linked or renamed
// into place, without replacing an existing dst unless force; an existing
// dst then matches ErrOutputExists). A full disk, a cancelled ctx or any
// other failure leaves no temporary file; a SIGKILL leaves none either
// where O_TMPFILE works. Writes go through a goroutine so that disk work overlaps the
// caller's crypto.
func WriteAtomic(dst string, perm fs.FileMode, force bool, fn func(io.Writer) error) error {
	err := atomicfile.WriteFunc(dst, atomicfile.Options{Perm: perm, Replace: force}, func(w io.Writer) error {
		aw := newAsyncWriter(w)
		err := fn(aw)
		if cerr := aw.Close(); err == nil {
			err = cerr
		}
		return err
	})
	if !force && errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s: %w; nothing was written", dst, ErrOutputExists)
	}
	return err
}
