package fusefs

// Special files: FIFOs, character and block devices and unix sockets made
// through the mount (mknod, mkfifo, bind). The cipher directory holds a
// real special node under the encrypted name, as gocryptfs does, and the
// kernel serves its I/O in the mount itself (a FIFO's pipe, a device's
// driver, a socket's peer): the mount never opens one.
//
// Whoever can write the cipher directory can plant such a node in place of
// a file (docs/MOUNT.md), so each node made through the mount has a marker
// beside it, named markerPrefix + its stored name, holding
// "tencrypt-special NUL <type> NUL <device number>" sealed with the
// symlink-target AEAD for (directory ID, stored name), the way a symlink's
// target is. A special entry whose marker does not open for its place,
// type and device number was not made through the mount: it is refused as
// before (left out of listings, ENOENT on lookup, EIO on a cached node).
// A NUL cannot be in a symlink target, so no sealed target passes for a
// marker.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// markerPrefix starts a special node's marker (reserved: hidden from
// listings, never an encrypted name).
const markerPrefix = names.ReservedPrefix + "node."

// markerName is the marker of the special node stored.
func markerName(stored string) string { return markerPrefix + stored }

// markerText is what a marker seals: the node's type and device number.
func markerText(mode uint32, rdev uint64) string {
	return fmt.Sprintf("tencrypt-special\x00%o\x00%d", mode&syscall.S_IFMT, rdev)
}

// isSpecial reports whether mode is a FIFO, a device or a socket.
func isSpecial(mode uint32) bool {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFIFO, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFSOCK:
		return true
	}
	return false
}

// sealMarker writes the marker of a special node of type mode and device
// number rdev, to be at place stored of d, under a fresh temporary name in
// d, which it returns; putMarker moves it into place.
func (f *FS) sealMarker(d cdir, stored string, mode uint32, rdev uint64) (string, error) {
	sealed, err := f.cfg.Names.EncryptSymlink(markerText(mode, rdev), d.iv, stored)
	if err != nil {
		return "", err
	}
	tmp := names.TempName()
	if err := writeNew(d.fd, tmp, []byte(sealed), false); err != nil {
		return "", err
	}
	return tmp, nil
}

// putMarker renames the sealed marker tmp of d into place for stored,
// replacing a stale one; on failure tmp is removed.
func putMarker(d cdir, tmp, stored string) error {
	if err := unix.Renameat(d.fd, tmp, d.fd, markerName(stored)); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	return nil
}

// linkSpecial links the special node tstored of td, of type kind, at
// stored of d, with a marker of its own. The source's marker is checked
// against the inode opened here, and that very inode is linked (through
// its /proc/self/fd link), so a node swapped in by name since the check
// cannot be linked under a marker sealed for the checked one.
func (f *FS) linkSpecial(td cdir, tstored string, kind uint32, d cdir, stored string) error {
	pfd, st, err := openPath(td, tstored, kind)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := f.checkMarker(td, tstored, &st); err != nil {
		return err
	}
	tmp, err := f.sealMarker(d, stored, st.Mode, st.Rdev)
	if err != nil {
		return err
	}
	if err := unix.Linkat(unix.AT_FDCWD, procPath(pfd), d.fd, stored, unix.AT_SYMLINK_FOLLOW); err != nil {
		unix.Unlinkat(d.fd, tmp, 0)
		return err
	}
	if err := putMarker(d, tmp, stored); err != nil {
		unix.Unlinkat(d.fd, stored, 0)
		return err
	}
	return nil
}

// checkMarker returns an entryError unless special entry stored of d,
// whose stat is st, has a marker sealed for its place, type and device
// number.
func (f *FS) checkMarker(d cdir, stored string, st *syscall.Stat_t) error {
	b, err := readMeta(d, markerName(stored), maxSidecar)
	if err == nil {
		var t string
		t, err = f.cfg.Names.DecryptSymlink(string(b), d.iv, stored)
		if err == nil && t != markerText(st.Mode, st.Rdev) {
			err = errors.New("the marker names another type or device number")
		}
	}
	if err != nil && !isEntryError(err) {
		err = &entryError{path: d.join(stored), want: "a file, directory or symlink, or a special file made through the mount",
			found: typeName(st.Mode) + " without a marker sealed for it (" + err.Error() + ")"}
	}
	return err
}

// removeMarker removes the marker of stored from d, if there is one.
func removeMarker(d cdir, stored string) {
	unix.Unlinkat(d.fd, markerName(stored), 0)
}

// moveMarker prepares the move of entry fromStored of from, of type kind,
// to toStored of to: a special node's marker must be there before the
// rename (checked, then sealed for the new place under a temporary name,
// returned; "" for other types). finishMove completes it.
func (f *FS) moveMarker(from cdir, fromStored string, kind uint32, to cdir, toStored string) (string, error) {
	if !isSpecial(kind) {
		return "", nil
	}
	var st syscall.Stat_t
	if _, err := statx(from.fd, fromStored, &st); err != nil {
		return "", err
	}
	if err := f.checkMarker(from, fromStored, &st); err != nil {
		return "", err
	}
	return f.sealMarker(to, toStored, st.Mode, st.Rdev)
}

// finishMove completes the markers of a rename: tmp ("" when a rename
// failed, or the moved entry is not special) goes into place for
// toStored; otherwise the marker of the replaced target, if any, goes.
// The moved entry's old marker goes either way.
func finishMove(from cdir, fromStored string, to cdir, toStored, tmp string) error {
	removeMarker(from, fromStored)
	if tmp == "" {
		removeMarker(to, toStored)
		return nil
	}
	return putMarker(to, tmp, toStored)
}

// Mknod makes a FIFO, device or socket (a socket when a process binds
// one in the mount), or an empty regular file (mknod(2) with S_IFREG).
// The node is made with mode 0, given to the caller, given its mode, and
// its marker is put in place last: a crash in between leaves a node that
// the mount refuses as planted (docs/MOUNT.md), never one with a mode that
// lets others use it before it has its owner.
func (n *node) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if mode&syscall.S_IFMT == syscall.S_IFREG {
		ino, fh, _, errno := n.Create(ctx, name, syscall.O_RDWR, mode, out)
		if errno == 0 {
			fh.(*handle).Release(ctx)
		}
		return ino, errno
	}
	if !isSpecial(mode) {
		return nil, syscall.EINVAL
	}
	d, stored, enc, errno := n.entryIn("mknod", name)
	if errno != 0 {
		return nil, errno
	}
	defer d.close()
	if err := writeSidecar(d, stored, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if err := unix.Mknodat(d.fd, stored, mode&syscall.S_IFMT, int(dev)); err != nil {
		removeSidecar(d, stored, enc)
		return nil, gofs.ToErrno(err)
	}
	st, gen, err := n.fs.finishNode(ctx, d, stored, mode, uint64(dev))
	if err != nil {
		unix.Unlinkat(d.fd, stored, 0)
		removeSidecar(d, stored, enc)
		return nil, n.fs.errno("mknod", name, err)
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	out.FromStat(&st)
	out.Ino = n.fs.inodeNumber(&st)
	return ino, 0
}

// finishNode gives the new special node stored of d to the caller, sets
// its mode (exactly mode's permission bits: the process umask applied to
// mknodat) and seals its marker; it returns the node's stat. The node is
// reopened by name, so whoever can write the cipher directory could have
// swapped another inode in since mknodat: it must still be the one just
// made (freshNode), or nothing is changed and no marker is sealed.
func (f *FS) finishNode(ctx context.Context, d cdir, stored string, mode uint32, rdev uint64) (st syscall.Stat_t, gen uint64, err error) {
	pfd, st, err := openPath(d, stored, mode&syscall.S_IFMT)
	if err != nil {
		return st, 0, err
	}
	defer unix.Close(pfd)
	if err := freshNode(d.join(stored), &st, mode, rdev); err != nil {
		return st, 0, err
	}
	chownCaller(ctx, d, pfd)
	// Through the checked inode's /proc/self/fd link: chmod opens nothing.
	if err := unix.Fchmodat(unix.AT_FDCWD, procPath(pfd), mode&07777, 0); err != nil {
		return st, 0, err
	}
	if gen, err = statx(pfd, "", &st); err != nil {
		return st, 0, err
	}
	tmp, err := f.sealMarker(d, stored, mode, rdev)
	if err != nil {
		return st, 0, err
	}
	if err := putMarker(d, tmp, stored); err != nil {
		return st, 0, err
	}
	return st, gen, nil
}

// freshNode checks that st is the special node mknodat just made as the
// mount's user, of type mode and device number rdev: one link, owned by
// the mount's user, no permission bits yet (mknodat was given none). A
// node planted in its place by someone without the mount's privileges
// fails at least one of these (a hard link to a node elsewhere has two
// links; the planter owns its own node), so the mount never changes the
// mode or owner of an inode outside the cipher directory.
func freshNode(path string, st *syscall.Stat_t, mode uint32, rdev uint64) error {
	ok := st.Mode&syscall.S_IFMT == mode&syscall.S_IFMT && st.Mode&07777 == 0 &&
		st.Nlink == 1 && st.Uid == uint32(os.Geteuid())
	if ok && (mode&syscall.S_IFMT == syscall.S_IFCHR || mode&syscall.S_IFMT == syscall.S_IFBLK) {
		ok = st.Rdev == rdev
	}
	if !ok {
		return &entryError{path: path, want: "the special node just made", found: "another inode (swapped in since mknod)"}
	}
	return nil
}

// checkSpecialEntry checks the marker of special entry stored of d (a
// listing's entry, not yet stat'ed).
func (f *FS) checkSpecialEntry(d cdir, stored string) error {
	var st syscall.Stat_t
	if _, err := statx(d.fd, stored, &st); err != nil {
		return err
	}
	if !isSpecial(st.Mode) {
		return nil
	}
	return f.checkMarker(d, stored, &st)
}
