package fusefs

// The cipher directory is hostile storage: whoever can write it may plant
// symlinks, FIFOs, devices, sockets and hard links in it, or swap entries
// while the mount runs. So no cipher path is ever handed to the kernel as
// a string: every operation starts from the descriptor of the cipher
// directory opened at mount (FS.rootFD) and walks down one directory at a
// time with O_NOFOLLOW|O_DIRECTORY (or in one openat2 call with
// RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH where the kernel has it), then acts
// on (directory descriptor, cipher name) with the *at calls, never
// following a symlink. An entry of the wrong type is refused with an
// entryError (EIO, or ENOENT for a lookup) and one log line; it is never
// followed, read from or written to. docs/MOUNT.md, "How paths are
// resolved", has the rules.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// dirFlags open a cipher directory for resolution only: O_PATH (no read
// permission needed, nothing to read), and never a symlink or a
// non-directory.
const dirFlags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// cdir is an open cipher directory: its descriptor, its path relative to
// the cipher directory (for logs) and its directory ID (the tweak of its
// names, read from its IV file).
type cdir struct {
	fd   int
	rel  string // "." for the root
	iv   names.DirID
	owns bool // fd is closed by close (the root's descriptor never is)
}

func (d cdir) close() {
	if d.owns {
		unix.Close(d.fd)
	}
}

// join is the path of entry name of d relative to the cipher directory.
func (d cdir) join(name string) string {
	if d.rel == "." {
		return name
	}
	return d.rel + "/" + name
}

// entryError reports a cipher entry that is not of the type the mount
// expects at that place: a symlink, FIFO, device or socket planted in the
// cipher directory, a directory where a file was, a metadata file of the
// wrong size. The mount refuses it (EIO; ENOENT for a lookup) and logs it
// once per operation, naming the cipher path and what was found.
type entryError struct {
	path  string // relative to the cipher directory
	want  string
	found string
}

func (e *entryError) Error() string {
	return fmt.Sprintf("cipher entry %s is %s where %s was expected: refusing it (was it planted in the cipher directory? remove it there)", e.path, e.found, e.want)
}

// typeName names the file type of mode, for logs.
func typeName(mode uint32) string {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		return "a regular file"
	case syscall.S_IFDIR:
		return "a directory"
	case syscall.S_IFLNK:
		return "a symlink"
	case syscall.S_IFIFO:
		return "a FIFO"
	case syscall.S_IFSOCK:
		return "a socket"
	case syscall.S_IFCHR:
		return "a character device"
	case syscall.S_IFBLK:
		return "a block device"
	}
	return fmt.Sprintf("an entry of mode %#o", mode)
}

// found describes what is at name in dirfd, for an entryError.
func found(dirfd int, name string) string {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	return typeName(st.Mode)
}

// typeError is the error of an open or walk that failed because of what
// is at name (a symlink under O_NOFOLLOW, a non-directory under
// O_DIRECTORY, a socket), or err itself when the failure is something
// else (ENOENT, EACCES).
func typeError(dirfd int, rel, name, want string, err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENXIO),
		errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.EXDEV):
		return &entryError{path: rel, want: want, found: found(dirfd, name)}
	}
	return err
}

// checkType returns an entryError unless mode is of type want (S_IF*).
func checkType(rel string, mode, want uint32) error {
	if mode&syscall.S_IFMT != want {
		return &entryError{path: rel, want: typeName(want), found: typeName(mode)}
	}
	return nil
}

// openRoot opens the cipher directory itself (the one path taken as
// given: it is the operator's) and probes openat2.
func openRoot(dir string) (fd int, openat2 bool, err error) {
	fd, err = unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, false, fmt.Errorf("open the cipher directory %s: %w", dir, err)
	}
	// openat2 is missing before Linux 5.6 and refused by some seccomp
	// profiles (ENOSYS or EPERM): then walk one component at a time.
	how := unix.OpenHow{Flags: dirFlags, Resolve: resolveFlags}
	if pfd, err := unix.Openat2(fd, ".", &how); err == nil {
		unix.Close(pfd)
		openat2 = true
	}
	return fd, openat2, nil
}

// resolveFlags keep openat2 inside the cipher directory and off symlinks
// (magic links included). Mount points inside the cipher directory (a
// bind mount, a snapshot) stay allowed, as with the per-component walk.
const resolveFlags = unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH

// chain returns the directory nodes from the root's child down to n (n
// last) with their names, or ESTALE when n is no longer in the tree.
func (n *node) chain() ([]link, error) {
	var out []link
	cur := n
	for !cur.IsRoot() {
		name, p := cur.Parent()
		if p == nil {
			return nil, syscall.ESTALE
		}
		out = append(out, link{n: cur, name: name})
		cur = p.Operations().(*node)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// link is one step of a walk: directory node n, named name in its parent.
type link struct {
	n    *node
	name string
}

// openDir opens directory node n's cipher directory and its IV; close it.
// With every IV on the way known, it is one openat2 call; otherwise (or
// when openat2 fails, e.g. EAGAIN because a rename raced it) a walk of
// one openat per component, reading IVs as it goes.
func (n *node) openDir() (cdir, error) {
	root := cdir{fd: n.fs.rootFD, rel: ".", iv: n.fs.root.iv}
	steps, err := n.chain()
	if err != nil || len(steps) == 0 {
		return root, err
	}
	if n.fs.openat2 {
		if d, ok := n.openDirAt2(root, steps); ok {
			return d, nil
		}
	}
	d := root
	for _, s := range steps {
		stored, _, err := n.fs.childName(d, s.name)
		if err != nil {
			d.close()
			return cdir{}, err
		}
		rel := d.join(stored)
		fd, err := unix.Openat(d.fd, stored, dirFlags, 0)
		if err != nil {
			err = typeError(d.fd, rel, stored, "a directory", err)
			d.close()
			return cdir{}, err
		}
		loc := names.ChildLoc(d.iv, stored)
		d.close()
		d = cdir{fd: fd, rel: rel, owns: true}
		if d.iv, err = s.n.loadIV(d, loc); err != nil {
			d.close()
			return cdir{}, err
		}
	}
	return d, nil
}

// openDirAt2 is openDir in one openat2 call, when every IV on the way is
// cached; ok is false when the caller must walk.
func (n *node) openDirAt2(root cdir, steps []link) (cdir, bool) {
	var b strings.Builder
	iv := root.iv
	for i, s := range steps {
		stored, _, err := n.fs.childName(cdir{iv: iv}, s.name)
		if err != nil {
			return cdir{}, false
		}
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(stored)
		var ok bool
		if iv, ok = s.n.cachedIV(); !ok {
			return cdir{}, false
		}
	}
	if b.Len() >= unix.PathMax {
		// The kernel refuses a path this long (ENAMETOOLONG): the cipher
		// path of a plaintext path near PATH_MAX is longer than it, so
		// walk, where only NAME_MAX applies to each component.
		return cdir{}, false
	}
	how := unix.OpenHow{Flags: dirFlags, Resolve: resolveFlags}
	fd, err := unix.Openat2(root.fd, b.String(), &how)
	if err != nil {
		return cdir{}, false
	}
	return cdir{fd: fd, rel: b.String(), iv: iv, owns: true}, true
}

// cachedIV returns directory n's ID if it was read already.
func (n *node) cachedIV() (names.DirID, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.iv, n.ivOK
}

// loadIV returns directory n's ID, reading it from d (n's open cipher
// directory, at place loc) the first time; the read happens without n.mu
// held (a directory's ID never changes: a rename seals it for the new
// place).
func (n *node) loadIV(d cdir, loc names.Loc) (names.DirID, error) {
	if iv, ok := n.cachedIV(); ok {
		return iv, nil
	}
	iv, err := n.fs.readDirIV(d, loc)
	if err != nil {
		return iv, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ivOK {
		n.iv, n.ivOK = iv, true
	}
	return n.iv, nil
}

// childName is the stored name of entry name in d, and the full encrypted
// name when it is a long name (else "").
func (f *FS) childName(d cdir, name string) (stored, longEnc string, err error) {
	enc, err := f.cfg.Names.Encrypt(name, d.iv)
	if err != nil {
		return "", "", err
	}
	stored, long := names.Stored(enc)
	if long {
		return stored, enc, nil
	}
	return stored, "", nil
}

// parentDir opens the cipher directory holding n and returns n's stored
// name in it; close d. The root has no parent: ESTALE.
func (n *node) parentDir() (d cdir, stored string, err error) {
	name, p := n.Parent()
	if p == nil {
		return cdir{}, "", syscall.ESTALE
	}
	d, err = p.Operations().(*node).openDir()
	if err != nil {
		return cdir{}, "", err
	}
	if stored, _, err = n.fs.childName(d, name); err != nil {
		d.close()
		return cdir{}, "", err
	}
	return d, stored, nil
}

// openPath opens entry name of d as O_PATH without following it, checks
// that it is of type want (S_IF*), and returns the descriptor and its
// stat; close fd. Nothing is read or written through an O_PATH descriptor
// and opening one has no side effect, even on a device or a FIFO.
func openPath(d cdir, name string, want uint32) (fd int, st syscall.Stat_t, err error) {
	fd, err = unix.Openat(d.fd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, st, err
	}
	if err = syscall.Fstat(fd, &st); err == nil {
		err = checkType(d.join(name), st.Mode, want)
	}
	if err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// procPath names the inode behind descriptor fd: opening it (or chmod,
// utimes) reaches exactly that inode, never a path that was swapped since.
func procPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// openRegular opens entry name of d, which must be a regular file, with
// flags (O_RDONLY or O_RDWR). It looks at the entry through an O_PATH
// descriptor first and then reopens that very inode, so a FIFO, device or
// socket planted there is never opened for I/O (a FIFO would block, a
// device could act on open) and a symlink is never followed. (No
// O_NONBLOCK on the reopen: it would cost the runtime poller a failed
// epoll_ctl per file; a regular file cannot block an open, except for a
// lease, which the kernel breaks after lease-break-time, 45 s.)
// Close the file.
func openRegular(d cdir, name string, flags int) (*os.File, *syscall.Stat_t, error) {
	pfd, st, err := openPath(d, name, syscall.S_IFREG)
	if err != nil {
		return nil, nil, err
	}
	defer unix.Close(pfd)
	fd, err := unix.Open(procPath(pfd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), d.join(name)), &st, nil
}

// openSeen opens entry name of d read-only for a short read (a header),
// when a stat of it, seen, just found a regular file: one openat with
// O_NOFOLLOW|O_NONBLOCK|O_NOCTTY (a symlink fails, a FIFO does not block,
// a socket fails), then the descriptor must still be that regular file
// (same device and inode), so a swap since the stat is refused. Cheaper
// than openRegular (a lookup of every file reads its header); the one
// thing it allows is that someone able to create device nodes who swaps
// one in between the stat and the open gets it opened (never read):
// docs/MOUNT.md. Close fd.
func openSeen(d cdir, name string, seen *syscall.Stat_t) (fd int, err error) {
	fd, err = unix.Openat(d.fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, typeError(d.fd, d.join(name), name, "a regular file", err)
	}
	var st syscall.Stat_t
	if err = syscall.Fstat(fd, &st); err == nil {
		if err = checkType(d.join(name), st.Mode, syscall.S_IFREG); err == nil && (st.Dev != seen.Dev || st.Ino != seen.Ino) {
			err = &entryError{path: d.join(name), want: "the regular file just looked up", found: "another file (swapped meanwhile)"}
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// fdReaderAt reads a descriptor with pread (no os.File: a non-blocking
// descriptor would cost the runtime poller a failed registration).
type fdReaderAt int

func (fd fdReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := unix.Pread(int(fd), p, off)
	if err != nil {
		return 0, err
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readMeta reads the small metadata file name of d (a directory IV, a
// long name's sidecar): it must be a regular file of at most max bytes.
func readMeta(d cdir, name string, max int) ([]byte, error) {
	f, _, err := openRegular(d, name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, err
	}
	if len(b) > max {
		return nil, &entryError{path: d.join(name), want: fmt.Sprintf("at most %d bytes", max), found: "a larger file"}
	}
	return b, nil
}

// abs is the absolute cipher path of rel, for errors and logs.
func (f *FS) abs(rel string) string { return filepath.Join(f.cfg.CipherDir, rel) }
