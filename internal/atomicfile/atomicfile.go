// Package atomicfile writes files all or nothing: the data goes to a
// temporary file beside the destination (O_EXCL, mode 0600), is synced, and
// only then renamed into place, after which the directory is synced. A crash,
// a full disk or an error from the caller leaves the destination as it was
// (old content, or absent) and no temporary file behind.
package atomicfile

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Options says how the file is installed.
type Options struct {
	// Perm is the installed file's mode; 0 means 0600. The temporary file is
	// 0600 until it is complete.
	Perm fs.FileMode
	// Replace lets the file replace an existing one. Without it, an
	// existing path is left alone and the error matches fs.ErrExist; the
	// check and the install are one step (RENAME_NOREPLACE, or a hard link
	// where the file system lacks it).
	Replace bool
	// BeforeInstall, if set, runs once the data is durable but before it
	// is visible at the path; an error from it aborts the write. It lets a
	// caller make an outside change that must not happen unless the file
	// can be written (and the file must not appear unless the change was
	// made).
	BeforeInstall func() error
}

// Write makes path hold data, or leaves it untouched.
func Write(path string, data []byte, opts Options) error {
	return WriteFunc(path, opts, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc makes path hold what fn writes, or leaves it untouched. fn must
// not keep w after it returns.
func WriteFunc(path string, opts Options, fn func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if err = fn(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	if err = f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if opts.BeforeInstall != nil {
		if err = opts.BeforeInstall(); err != nil {
			return err
		}
	}
	if err = install(tmp, path, opts.Replace); err != nil {
		return err
	}
	return SyncDir(dir)
}

// install renames tmp to path; without replace it refuses an existing path
// in the same step.
func install(tmp, path string, replace bool) error {
	if replace {
		return os.Rename(tmp, path)
	}
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		if err = os.Link(tmp, path); err == nil {
			return os.Remove(tmp)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "install", Old: tmp, New: path, Err: err}
	}
	return nil
}

// SyncDir makes a directory's entries (a rename, a new file) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
