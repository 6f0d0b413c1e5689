// Package atomicfile writes files all or nothing: the data goes to a
// temporary file in the destination's directory, is synced, and only then
// appears at the destination, after which the directory is synced. A crash,
// a full disk or an error from the caller leaves the destination as it was
// (old content, or absent).
//
// The temporary file is unnamed (O_TMPFILE) where the file system supports
// it (ext4, xfs, btrfs, tmpfs...): it has no directory entry until it is
// complete, so even a process killed with SIGKILL, or a machine that loses
// power, leaves nothing behind; the kernel frees it when its descriptor
// closes. Elsewhere (EOPNOTSUPP, or EISDIR from kernels without O_TMPFILE)
// it is a hidden named file, ".NAME.tmp-RANDOM", created O_EXCL with mode
// 0600 and removed on every error path; only a SIGKILL or a crash during the
// write can leave that one behind.
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
	"strconv"

	"golang.org/x/sys/unix"
)

// Options says how the file is installed.
type Options struct {
	// Perm is the installed file's mode; 0 means 0600. The temporary file is
	// 0600 until it is complete.
	Perm fs.FileMode
	// Replace lets the file replace an existing one. Without it, an
	// existing path is left alone and the error matches fs.ErrExist; the
	// check and the install are one step (linkat of the unnamed file, which
	// fails with EEXIST; or RENAME_NOREPLACE, or a hard link where the file
	// system lacks it).
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

// forceNamed makes WriteFunc use the named temporary file, for tests of the
// fallback.
var forceNamed bool

// WriteFunc makes path hold what fn writes, or leaves it untouched. fn must
// not keep w after it returns. w is an *os.File (so io.Copy into it can use
// copy_file_range or splice); fn must only write to it.
func WriteFunc(path string, opts Options, fn func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	t, err := createTemp(dir, path)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			t.discard()
		}
	}()
	if err = fn(t.f); err != nil {
		return err
	}
	if err = t.f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	if err = t.f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if opts.BeforeInstall != nil {
		if err = opts.BeforeInstall(); err != nil {
			return err
		}
	}
	if err = t.install(path, opts.Replace); err != nil {
		return err
	}
	return SyncDir(dir)
}

// temp is a temporary file being written: unnamed (name == "") or named.
type temp struct {
	f    *os.File
	name string
}

func createTemp(dir, path string) (*temp, error) {
	if !forceNamed {
		f, err := os.OpenFile(dir, unix.O_TMPFILE|os.O_WRONLY, 0o600)
		if err == nil {
			return &temp{f: f}, nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) {
			return nil, fmt.Errorf("create temporary file for %s: %w", path, err)
		}
	}
	name := tempName(path)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	return &temp{f: f, name: name}, nil
}

func tempName(path string) string {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	return filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(rnd[:]))
}

// discard closes and removes the temporary file.
func (t *temp) discard() {
	t.f.Close()
	if t.name != "" {
		os.Remove(t.name)
	}
}

// install makes the complete temporary file appear at path; without
// replace it refuses an existing path in the same step. The file is closed.
func (t *temp) install(path string, replace bool) error {
	if t.name == "" {
		return t.linkUnnamed(path, replace)
	}
	if err := t.f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return installNamed(t.name, path, replace)
}

// linkUnnamed gives the unnamed file a name. Without replace, linkat to
// path itself fails with EEXIST if path exists: the no-replace semantic in
// one step. With replace, it links to a fresh hidden name and renames that
// over path, the only moment a named temporary file exists.
func (t *temp) linkUnnamed(path string, replace bool) error {
	target := path
	if replace {
		target = tempName(path)
	}
	if err := linkFD(t.f, target); err != nil {
		return &os.LinkError{Op: "install", Old: "(unnamed temporary file)", New: path, Err: err}
	}
	if err := t.f.Close(); err != nil {
		if replace {
			os.Remove(target)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if replace {
		if err := os.Rename(target, path); err != nil {
			os.Remove(target)
			return err
		}
	}
	return nil
}

// linkFD links an O_TMPFILE file at name. linkat through /proc/self/fd
// needs only /proc; AT_EMPTY_PATH, the fallback without /proc, needs
// CAP_DAC_READ_SEARCH.
func linkFD(f *os.File, name string) error {
	fd := int(f.Fd())
	err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.AT_FDCWD, name, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, unix.ENOENT) {
		if _, serr := os.Stat("/proc/self/fd"); serr != nil {
			err = unix.Linkat(fd, "", unix.AT_FDCWD, name, unix.AT_EMPTY_PATH)
		}
	}
	return err
}

// installNamed renames tmp to path; without replace it refuses an existing
// path in the same step. tmp is removed on failure.
func installNamed(tmp, path string, replace bool) (err error) {
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if replace {
		return os.Rename(tmp, path)
	}
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
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
