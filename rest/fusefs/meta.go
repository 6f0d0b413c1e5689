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

// readDirIV reads the ID of the open cipher directory d, which is at
// place loc, from its IV file (names.Transform.ReadDirID: a regular file,
// read without following a symlink or blocking, sealed for loc). Any
// failure wraps names.ErrBadDirIV; the directory is then unreadable, never
// read under another ID.
func (f *FS) readDirIV(d cdir, loc names.Loc) (names.DirID, error) {
	id, recovered, err := f.cfg.Names.ReadDirID(d.fd, loc)
	if err != nil {
		// Something other than a regular file there was planted: say so.
		var st unix.Stat_t
		if unix.Fstatat(d.fd, names.DirIVFile, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
			err = fmt.Errorf("%w: %w", err, &entryError{path: d.join(names.DirIVFile), want: "a regular file", found: typeName(st.Mode)})
		}
		return id, fmt.Errorf("%s: %w", f.abs(d.rel), err)
	}
	if recovered {
		f.log.Info("completed an interrupted directory rename (its IV file was sealed for the new place)", "cipher_dir", f.abs(d.rel))
	}
	return id, nil
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

// isDirIVFile reports whether a cipher name is a directory's IV file or
// its pending replacement (a rename under way): what an empty directory
// holds.
func isDirIVFile(stored string) bool {
	return stored == names.DirIVFile || stored == names.DirIVNextFile
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
