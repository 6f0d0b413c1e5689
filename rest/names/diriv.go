package names

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// The directory IV file (docs/NAMES.md):
//
//	magic "TDIV" (4) ‖ version 2 (1) ‖ nonce (24) ‖ sealed ID (16) ‖ tag (16)
//
// sealed with XChaCha20-Poly1305 under the directory-ID key, with
//
//	ad = magic ‖ version ‖ kind (1) ‖ parent (16) ‖ stored name
//
// where kind is 'R' for the root, whose parent field is the volume ID and
// whose name is empty, and 'D' for any other directory, whose parent field
// is its parent's ID and whose name is its own stored name in the parent.
const (
	// DirIDSize is the size of a directory's ID, the tweak of its names.
	DirIDSize = cryptocore.EMETweakSize
	// DirIVFileSize is the size of a directory IV file.
	DirIVFileSize = len(dirIVMagic) + 1 + cryptocore.XChaChaOverhead + DirIDSize

	dirIVMagic   = "TDIV"
	dirIVVersion = 2
	kindRoot     = 'R'
	kindDir      = 'D'
)

// DirID is a directory's random identity. Two directories' IDs differ
// (with overwhelming probability), so equal names in them encrypt
// differently, and a name moved from one to the other does not decrypt.
// The ID never changes: renaming a directory seals the same ID for its new
// place, so its entries' names stay valid.
type DirID [DirIDSize]byte

// ErrBadDirIV: a cipher directory's IV file is missing, malformed, or not
// sealed for the place where the directory is (moved, swapped, copied or
// forged).
var ErrBadDirIV = errors.New("directory IV file (" + DirIVFile + ") missing, malformed or not sealed for this directory: the cipher directory was tampered with or damaged")

// NewDirID returns a random ID, never all zeros.
func NewDirID() DirID {
	var id DirID
	for id == (DirID{}) {
		_, _ = rand.Read(id[:])
	}
	return id
}

// Loc is where a directory is: the root of the volume, or the entry of a
// given stored name in the directory of a given ID. An IV file opens only
// at the Loc it was sealed for.
type Loc struct {
	root   bool
	parent DirID
	stored string
}

// RootLoc is the place of the volume's root directory.
func RootLoc() Loc { return Loc{root: true} }

// ChildLoc is the place of the directory stored (its stored name, a long
// name's hash form for long names) in the directory whose ID is parent.
func ChildLoc(parent DirID, stored string) Loc { return Loc{parent: parent, stored: stored} }

// String names the place for logs and errors, without the parent's ID.
func (l Loc) String() string {
	if l.root {
		return "the volume root"
	}
	return fmt.Sprintf("entry %q", trim(l.stored))
}

// dirIVAD is the associated data of an IV file sealed for l.
func (t *Transform) dirIVAD(l Loc) []byte {
	ad := make([]byte, 0, len(dirIVMagic)+2+DirIDSize+len(l.stored))
	ad = append(ad, dirIVMagic...)
	ad = append(ad, dirIVVersion)
	if l.root {
		ad = append(ad, kindRoot)
		return append(ad, t.volumeID[:]...)
	}
	ad = append(ad, kindDir)
	ad = append(ad, l.parent[:]...)
	return append(ad, l.stored...)
}

// SealDirIV returns the IV file content holding id, sealed for l.
func (t *Transform) SealDirIV(id DirID, l Loc) []byte {
	if id == (DirID{}) || (!l.root && l.stored == "") {
		panic("BUG: names: sealing a zero directory ID or for a nameless place")
	}
	out := make([]byte, 0, DirIVFileSize)
	out = append(out, dirIVMagic...)
	out = append(out, dirIVVersion)
	return t.dirID.Seal(out, id[:], t.dirIVAD(l))
}

// OpenDirIV checks the content of an IV file against the place l of its
// directory and returns the directory's ID. Any failure is ErrBadDirIV,
// with a hint of which (the length and header are public).
func (t *Transform) OpenDirIV(data []byte, l Loc) (DirID, error) {
	var id DirID
	switch {
	case len(data) == DirIDSize:
		return id, fmt.Errorf("%w: %d bytes, the IV of a format-1 volume", ErrBadDirIV, len(data))
	case len(data) != DirIVFileSize:
		return id, fmt.Errorf("%w: %d bytes, want %d", ErrBadDirIV, len(data), DirIVFileSize)
	case string(data[:len(dirIVMagic)]) != dirIVMagic || data[len(dirIVMagic)] != dirIVVersion:
		return id, fmt.Errorf("%w: unknown header %x", ErrBadDirIV, data[:len(dirIVMagic)+1])
	}
	pt, err := t.dirID.Open(nil, data[len(dirIVMagic)+1:], t.dirIVAD(l))
	if err != nil || len(pt) != DirIDSize {
		return id, fmt.Errorf("%w: it does not authenticate for %s (copied or moved from another directory, swapped, or forged)", ErrBadDirIV, l)
	}
	copy(id[:], pt)
	if subtle.ConstantTimeCompare(id[:], make([]byte, DirIDSize)) == 1 {
		return DirID{}, fmt.Errorf("%w: all-zero directory ID", ErrBadDirIV)
	}
	return id, nil
}

// readMeta reads the small regular file name in the directory open as
// dirfd (an O_PATH descriptor is fine), at most max bytes (more is an
// error). Whatever is there is first opened O_PATH|O_NOFOLLOW, which has
// no side effect, and fstat'ed: anything but a regular file is refused
// without ever being opened for reading (a FIFO would block, a device can
// act on open, a symlink is never followed); a regular file is reopened
// through /proc/self/fd, so exactly the inode checked is read, with
// O_NONBLOCK for good measure. The mount reads IV files with it.
func readMeta(dirfd int, name string, max int) ([]byte, error) {
	pfd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file (mode %#o)", name, st.Mode&unix.S_IFMT)
	}
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "reopen", Path: name, Err: err}
	}
	defer unix.Close(fd)
	buf := make([]byte, max+1)
	n := 0
	for n < len(buf) {
		m, err := unix.Pread(fd, buf[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: name, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return buf[:n], nil
}

// writeMeta creates the file name in dirfd (never replacing one) with
// data, read-only, synced. On failure nothing is left behind.
func writeMeta(dirfd int, name string, data []byte) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o400)
	if err != nil {
		return &os.PathError{Op: "create", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, name, 0)
		return err
	}
	return nil
}

// ReadDirID reads the IV file of the directory open as dirfd, which is at
// place l, and returns its ID. If the IV file does not open for l but a
// DirIVNextFile does, a rename of the directory was interrupted after the
// directory moved (docs/NAMES.md): the pending IV is committed and
// recovered is true. Any other failure is ErrBadDirIV; nothing else is
// ever tried, so a broken IV file makes the directory unreadable, never
// readable under another ID.
func (t *Transform) ReadDirID(dirfd int, l Loc) (id DirID, recovered bool, err error) {
	data, err := readMeta(dirfd, DirIVFile, DirIVFileSize)
	if err == nil {
		if id, err = t.OpenDirIV(data, l); err == nil {
			return id, false, nil
		}
	} else {
		err = fmt.Errorf("%w: %w", ErrBadDirIV, err)
	}
	next, nerr := readMeta(dirfd, DirIVNextFile, DirIVFileSize)
	if nerr != nil {
		return DirID{}, false, err
	}
	nid, nerr := t.OpenDirIV(next, l)
	if nerr != nil {
		return DirID{}, false, err
	}
	// Best effort: if this fails (a read-only cipher directory), the next
	// read recovers the same way.
	_ = unix.Renameat(dirfd, DirIVNextFile, dirfd, DirIVFile)
	return nid, true, nil
}

// CreateDirIV gives the new directory open as dirfd, at place l, a fresh
// ID: its IV file is created (never replacing one: that would make every
// name in it undecryptable), read-only and synced.
func (t *Transform) CreateDirIV(dirfd int, l Loc) (DirID, error) {
	id := NewDirID()
	if err := writeMeta(dirfd, DirIVFile, t.SealDirIV(id, l)); err != nil {
		return DirID{}, fmt.Errorf("create the directory IV of %s: %w", l, err)
	}
	return id, nil
}

// RestoreDirIV writes the IV file of id at l back into dirfd (undoing a
// failed rmdir).
func (t *Transform) RestoreDirIV(dirfd int, id DirID, l Loc) error {
	if err := writeMeta(dirfd, DirIVFile, t.SealDirIV(id, l)); err != nil {
		return fmt.Errorf("restore the directory IV of %s: %w", l, err)
	}
	return nil
}

// RemoveDirIV removes the IV file (and any pending one) of the directory
// open as dirfd, before it is removed.
func RemoveDirIV(dirfd int) error {
	_ = unix.Unlinkat(dirfd, DirIVNextFile, 0)
	if err := unix.Unlinkat(dirfd, DirIVFile, 0); err != nil {
		return &os.PathError{Op: "remove", Path: DirIVFile, Err: err}
	}
	return nil
}

// PrepareMove is the first step of renaming the directory open as dirfd,
// whose ID is id, to the place to: it writes DirIVNextFile, the ID sealed
// for to, synced with its directory. The caller then renames the
// directory, syncs the parents (so the rename is durable before the next
// step), and calls CommitMove; or AbortMove if the rename failed. A crash
// before the rename leaves a pending file that is never used (the
// directory is still where DirIVFile says); a crash after it is recovered
// by ReadDirID, since only the pending file opens at the new place.
func (t *Transform) PrepareMove(dirfd int, id DirID, to Loc) error {
	if err := unix.Unlinkat(dirfd, DirIVNextFile, 0); err != nil && err != unix.ENOENT {
		return fmt.Errorf("remove a stale %s: %w", DirIVNextFile, err)
	}
	if err := writeMeta(dirfd, DirIVNextFile, t.SealDirIV(id, to)); err != nil {
		return fmt.Errorf("seal the directory IV for %s: %w", to, err)
	}
	if err := SyncDir(dirfd); err != nil {
		_ = unix.Unlinkat(dirfd, DirIVNextFile, 0)
		return err
	}
	return nil
}

// SyncDir fsyncs the directory open as dirfd, which may be an O_PATH
// descriptor (fsync needs a readable one: it is reopened).
func SyncDir(dirfd int) error {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the directory to sync it: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("sync the directory: %w", err)
	}
	return nil
}

// CommitMove replaces the directory's IV file with the pending one,
// atomically, once the directory is at its new place.
func CommitMove(dirfd int) error {
	if err := unix.Renameat(dirfd, DirIVNextFile, dirfd, DirIVFile); err != nil {
		return fmt.Errorf("commit the directory IV: %w", err)
	}
	return nil
}

// AbortMove removes the pending IV file after a failed rename.
func AbortMove(dirfd int) { _ = unix.Unlinkat(dirfd, DirIVNextFile, 0) }

// openDir opens the cipher directory path: the operator's path, taken as
// given (it may be a symlink); what is inside is never followed.
func openDir(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// ReadRootID reads the root directory ID of the volume at the cipher
// directory dir.
func (t *Transform) ReadRootID(dir string) (DirID, error) {
	fd, err := openDir(dir)
	if err != nil {
		return DirID{}, err
	}
	defer unix.Close(fd)
	id, _, err := t.ReadDirID(fd, RootLoc())
	if err != nil {
		return DirID{}, fmt.Errorf("%s: %w", dir, err)
	}
	return id, nil
}
