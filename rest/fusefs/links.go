package fusefs

// Links and names: symlink, readlink, link, rename, unlink.

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, stored, enc, errno := n.entryIn("symlink", name)
	if errno != 0 {
		return nil, errno
	}
	defer d.close()
	// Sealed for this entry: its directory's ID and its stored name.
	sealed, err := n.fs.cfg.Names.EncryptSymlink(target, d.iv, stored)
	if err != nil {
		return nil, syscall.ENAMETOOLONG
	}
	if err := writeSidecar(d, stored, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if err := unix.Symlinkat(sealed, d.fd, stored); err != nil {
		removeSidecar(d, stored, enc)
		return nil, gofs.ToErrno(err)
	}
	pfd, st, err := openPath(d, stored, syscall.S_IFLNK)
	if err != nil {
		return nil, n.fs.errno("symlink", name, err)
	}
	defer unix.Close(pfd)
	// Reopened by name: it must still be the link just made, not one
	// hard-linked in from elsewhere, before its owner changes.
	if st.Nlink != 1 || st.Uid != uint32(os.Geteuid()) {
		return nil, n.fs.errno("symlink", name, &entryError{path: d.join(stored), want: "the symlink just made", found: "another inode (swapped in since symlink)"})
	}
	chownCaller(ctx, d, pfd)
	gen, err := statx(pfd, "", &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	out.FromStat(&st)
	out.Ino = n.fs.inodeNumber(&st)
	out.Size = uint64(len(target))
	return ino, 0
}

// readlinkAt returns the plaintext target of symlink stored in d. A
// symlink whose target does not open for this entry (one planted in the
// cipher directory pointing at a host path, or a target copied from
// another symlink) is an entryError.
func (f *FS) readlinkAt(d cdir, stored string) (string, error) {
	buf := make([]byte, unix.PathMax)
	k, err := unix.Readlinkat(d.fd, stored, buf)
	if errors.Is(err, syscall.EINVAL) {
		return "", &entryError{path: d.join(stored), want: "a symlink", found: found(d.fd, stored)}
	}
	if err != nil {
		return "", err
	}
	t, err := f.cfg.Names.DecryptSymlink(string(buf[:k]), d.iv, stored)
	if err != nil {
		return "", &entryError{path: d.join(stored), want: "a symlink with a target sealed for it", found: "a symlink whose target does not authenticate here (planted, or copied from another symlink)"}
	}
	if strings.IndexByte(t, 0) >= 0 {
		// A special node's marker is sealed the same way for the same
		// place; no real target holds a NUL, so this is a marker posing as
		// a target (a special file turned into a symlink).
		return "", &entryError{path: d.join(stored), want: "a symlink", found: "a symlink whose target is a special file's marker"}
	}
	return t, nil
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	d, stored, err := n.parentDir()
	if err != nil {
		return nil, n.fs.errno("readlink", n.plainPath(), err)
	}
	defer d.close()
	t, err := n.fs.readlinkAt(d, stored)
	if err != nil {
		return nil, n.fs.errno("readlink", n.plainPath(), err)
	}
	return []byte(t), 0
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.fs != n.fs {
		return nil, syscall.EXDEV
	}
	td, tstored, err := t.parentDir()
	if err != nil {
		return nil, n.fs.errno("link", name, err)
	}
	defer td.close()
	d, stored, enc, errno := n.entryIn("link", name)
	if errno != 0 {
		return nil, errno
	}
	defer d.close()
	if err := writeSidecar(d, stored, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if isSpecial(t.kind()) {
		if err := n.fs.linkSpecial(td, tstored, t.kind(), d, stored); err != nil {
			removeSidecar(d, stored, enc)
			return nil, n.fs.errno("link", name, err)
		}
	} else if t.kind() == syscall.S_IFLNK {
		// A symlink's target is sealed for its entry: the new name gets a
		// new symlink with the target sealed for it (a copy, not a second
		// link of the same inode).
		if err := n.fs.copySymlink(td, tstored, d, stored, stored); err != nil {
			removeSidecar(d, stored, enc)
			return nil, n.fs.errno("link", name, err)
		}
	} else if err := unix.Linkat(td.fd, tstored, d.fd, stored, 0); err != nil {
		// linkat without AT_SYMLINK_FOLLOW links the entry itself.
		removeSidecar(d, stored, enc)
		return nil, gofs.ToErrno(err)
	}
	var st syscall.Stat_t
	gen, err := statx(d.fd, stored, &st)
	if err == nil {
		err = checkType(d.join(stored), st.Mode, t.kind())
	}
	if err != nil {
		return nil, n.fs.errno("link", name, err)
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	if err := ino.Operations().(*node).fillAttr(d, stored, &st, &out.Attr); err != nil {
		return nil, n.fs.errno("link", name, err)
	}
	return ino, 0
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	d, stored, enc, errno := n.entryIn("unlink", name)
	if errno != 0 {
		return errno
	}
	defer d.close()
	if err := unix.Unlinkat(d.fd, stored, 0); err != nil {
		return gofs.ToErrno(err)
	}
	removeSidecar(d, stored, enc)
	removeMarker(d, stored)
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || np.fs != n.fs {
		return syscall.EXDEV
	}
	from, to, closeDirs, targetFailed, err := n.openRenameDirs(np)
	if err != nil {
		if targetFailed {
			return n.fs.errno("rename", newName, err)
		}
		return n.fs.errno("rename", name, err)
	}
	defer closeDirs()
	fromStored, fromEnc, err := n.fs.childName(from, name)
	if err != nil {
		return n.fs.errno("rename", name, err)
	}
	toStored, toEnc, err := n.fs.childName(to, newName)
	if err != nil {
		return n.fs.errno("rename", newName, err)
	}
	if np == n && fromStored == toStored {
		return 0
	}
	exchange := flags&unix.RENAME_EXCHANGE != 0
	fromKind, err := entryKind(from, fromStored)
	if err != nil {
		return n.fs.errno("rename", name, err)
	}
	toKind := uint32(0)
	if exchange {
		if toKind, err = exchangeKind(fromKind, to, toStored); err != nil {
			return n.fs.errno("rename", newName, err)
		}
	}
	// The name is encrypted again under the target directory's ID. On
	// exchange both names stay where they are, so their sidecars do too.
	if !exchange {
		if err := writeSidecar(to, toStored, toEnc); err != nil {
			return gofs.ToErrno(err)
		}
	}
	if fromKind == syscall.S_IFLNK {
		if err := n.fs.moveSymlink(from, fromStored, to, toStored, flags); err != nil {
			return n.fs.errno("rename", name, err)
		}
		removeSidecar(from, fromStored, fromEnc)
		removeMarker(to, toStored) // a special node's, replaced
		return 0
	}
	marker, err := n.fs.moveMarker(from, fromStored, fromKind, to, toStored)
	if err != nil {
		return n.fs.errno("rename", name, err)
	}
	if targetFailed, err := n.renameMoving(from, fromStored, fromKind, to, toStored, toKind, newName, flags); err != nil {
		if marker != "" {
			unix.Unlinkat(to.fd, marker, 0)
		}
		if targetFailed {
			return n.fs.errno("rename", newName, err)
		}
		return n.fs.errno("rename", name, err)
	}
	if !exchange {
		removeSidecar(from, fromStored, fromEnc)
		if err := finishMove(from, fromStored, to, toStored, marker); err != nil {
			return n.fs.errno("rename", newName, err)
		}
	}
	return 0
}

// openRenameDirs opens the cipher directories of a rename from n to np
// (one when they are the same); closeDirs releases them. On error it says
// whether opening the target failed.
func (n *node) openRenameDirs(np *node) (from, to cdir, closeDirs func(), targetFailed bool, err error) {
	if from, err = n.openDir(); err != nil {
		return from, to, nil, false, err
	}
	if np == n {
		return from, from, from.close, false, nil
	}
	if to, err = np.openDir(); err != nil {
		from.close()
		return from, to, nil, true, err
	}
	return from, to, func() { to.close(); from.close() }, false, nil
}

// exchangeKind returns the file type of the entry toStored of to, which a
// RENAME_EXCHANGE swaps with an entry of type fromKind. A symlink's target
// is sealed for its entry, and two symlinks cannot be rewritten in one
// atomic step, so an exchange involving one is EINVAL.
func exchangeKind(fromKind uint32, to cdir, toStored string) (uint32, error) {
	toKind, err := entryKind(to, toStored)
	if err != nil {
		return 0, err
	}
	if fromKind == syscall.S_IFLNK || toKind == syscall.S_IFLNK || isSpecial(fromKind) || isSpecial(toKind) {
		return 0, syscall.EINVAL
	}
	return toKind, nil
}

// prepareDirMoves seals the ID of each directory that a rename moves for
// its new place before the rename (docs/NAMES.md, "Renaming a
// directory"): the moved entry's, and on exchange the other one's too. On
// error it aborts what it prepared and says whether the exchange's target
// failed; the caller closes the returned directories either way.
func (f *FS) prepareDirMoves(from cdir, fromStored string, fromKind uint32, to cdir, toStored string, toKind uint32) (moves []cdir, targetFailed bool, err error) {
	if fromKind == syscall.S_IFDIR {
		c, err := f.prepareDirMove(from, fromStored, to.iv, toStored)
		if err != nil {
			return nil, false, err
		}
		moves = append(moves, c)
	}
	if toKind == syscall.S_IFDIR {
		c, err := f.prepareDirMove(to, toStored, from.iv, fromStored)
		if err != nil {
			for _, c := range moves {
				names.AbortMove(c.fd)
			}
			return moves, true, err
		}
		moves = append(moves, c)
	}
	return moves, false, nil
}

// renameOverEmptyDir retries a rename whose target toStored is a
// directory holding only its IV, as rename(2) replaces an empty
// directory: the IV goes first and is written back if the rename fails.
// It returns renameErr when the target is anything else.
func (n *node) renameOverEmptyDir(from cdir, fromStored string, to cdir, toStored, newName string, renameErr error) error {
	t, err := openChildDir(to, toStored)
	if err != nil {
		return renameErr
	}
	defer t.close()
	ents, err := readDirents(t, 3)
	if err != nil || len(ents) == 0 {
		return renameErr
	}
	for _, e := range ents {
		if !isDirIVFile(e.Name()) {
			return renameErr
		}
	}
	loc := names.ChildLoc(to.iv, toStored)
	iv, err := n.fs.readDirIV(t, loc)
	if err != nil {
		return err
	}
	if err := names.RemoveDirIV(t.fd); err != nil {
		return err
	}
	if err := unix.Renameat2(from.fd, fromStored, to.fd, toStored, 0); err != nil {
		if rerr := n.fs.cfg.Names.RestoreDirIV(t.fd, iv, loc); rerr != nil {
			n.fs.log.Error("rename failed and the target directory's IV could not be restored", "dir", newName, "cipher_dir", n.fs.abs(t.rel), "err", rerr)
		}
		return err
	}
	return nil
}

// renameMoving renames fromStored of from to toStored of to with flags
// (renameat2), sealing the IV of each directory it moves for its new place
// first and committing it after (prepareDirMoves); on failure the prepared
// moves are aborted, and targetFailed says whether the target's failed.
func (n *node) renameMoving(from cdir, fromStored string, fromKind uint32, to cdir, toStored string, toKind uint32, newName string, flags uint32) (targetFailed bool, err error) {
	moves, targetFailed, err := n.fs.prepareDirMoves(from, fromStored, fromKind, to, toStored, toKind)
	defer func() {
		for _, c := range moves {
			c.close()
		}
	}()
	if err != nil {
		return targetFailed, err
	}
	err = unix.Renameat2(from.fd, fromStored, to.fd, toStored, uint(flags))
	if (errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)) && flags == 0 {
		err = n.renameOverEmptyDir(from, fromStored, to, toStored, newName, err)
	}
	if err != nil {
		for _, c := range moves {
			names.AbortMove(c.fd)
		}
		return false, err
	}
	if len(moves) > 0 {
		n.fs.commitDirMoves(from, to, moves)
	}
	return false, nil
}
