package fusefs

// The metadata files of a cipher directory (docs/NAMES.md): each
// directory's IV file and long names' sidecars. They are read and written
// only through the directory's descriptor (path.go), must be regular files
// and are read with a size bound, so a FIFO planted in their place cannot
// block a lookup and a symlink cannot make the mount read a host file.

import (
	"errors"
	"fmt"
	"io/fs"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// maxSidecar bounds a sidecar's size: the full encrypted form of a
// 255-byte name is a few hundred bytes.
const maxSidecar = 4096

// readDirIV reads the IV of the open cipher directory d. Any failure
// wraps names.ErrBadDirIV (and an entryError when something other than a
// regular file is there).
func (f *FS) readDirIV(d cdir) (names.DirIV, error) {
	var iv names.DirIV
	b, err := readMeta(d, names.DirIVFile, names.DirIVSize)
	if err != nil {
		return iv, fmt.Errorf("%s: %w: %w", f.abs(d.rel), names.ErrBadDirIV, err)
	}
	if len(b) != names.DirIVSize {
		return iv, fmt.Errorf("%s: %w: %d bytes", f.abs(d.rel), names.ErrBadDirIV, len(b))
	}
	copy(iv[:], b)
	return iv, nil
}

// writeDirIV creates the IV file of the new (or emptied) cipher directory
// whose descriptor is dirfd, synced, read-only. It never replaces an
// existing IV, which would make every name in the directory undecryptable.
func writeDirIV(dirfd int, iv names.DirIV) error {
	return writeNew(dirfd, names.DirIVFile, iv[:], true)
}

// writeNew creates file name in dirfd (O_EXCL: never through a symlink,
// never over an existing file) holding data, read-only; on failure
// nothing is left.
func writeNew(dirfd int, name string, data []byte, sync bool) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, data)
	if err == nil && sync {
		err = unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		unix.Unlinkat(dirfd, name, 0)
	}
	return err
}

// readSidecar returns the full encrypted name held by the sidecar of the
// long name stored in d, checked against stored (names.CheckSidecar).
func readSidecar(d cdir, stored string) (string, error) {
	b, err := readMeta(d, names.Sidecar(stored), maxSidecar)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%w: the sidecar of %q is missing", names.ErrBadName, stored)
	}
	if err != nil {
		return "", err
	}
	if err := names.CheckSidecar(stored, string(b)); err != nil {
		return "", err
	}
	return string(b), nil
}

// writeSidecar stores enc, the full encrypted name of the long name
// stored, in its sidecar in d; nothing to do when enc is "" (a short
// name). An existing sidecar (the entry is being replaced) holds the same
// name, since the stored name is its hash; one that differs is replaced.
func writeSidecar(d cdir, stored, enc string) error {
	if enc == "" {
		return nil
	}
	sc := names.Sidecar(stored)
	err := writeNew(d.fd, sc, []byte(enc), false)
	if errors.Is(err, fs.ErrExist) {
		if b, rerr := readMeta(d, sc, maxSidecar); rerr == nil && string(b) == enc {
			return nil
		}
		if err = unix.Unlinkat(d.fd, sc, 0); err == nil {
			err = writeNew(d.fd, sc, []byte(enc), false)
		}
	}
	return err
}

// removeSidecar removes the sidecar of stored from d when it is a long
// name (enc != "").
func removeSidecar(d cdir, stored, enc string) {
	if enc != "" {
		unix.Unlinkat(d.fd, names.Sidecar(stored), 0)
	}
}
