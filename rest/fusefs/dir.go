package fusefs

// Directory operations: lookup, readdir, mkdir, rmdir.

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, err := n.openDir()
	if err != nil {
		return nil, n.fs.lookupErrno(name, err)
	}
	defer d.close()
	stored, enc, err := n.fs.childName(d, name)
	if err != nil {
		return nil, n.fs.lookupErrno(name, err)
	}
	var st syscall.Stat_t
	gen, err := statx(d.fd, stored, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	// Only what the mount makes can be a plaintext entry: a FIFO, device
	// or socket without its marker was planted there (fillAttr checks
	// the marker).
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG, syscall.S_IFDIR, syscall.S_IFLNK:
	case syscall.S_IFIFO, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFSOCK:
	default:
		return nil, n.fs.lookupErrno(name, &entryError{path: d.join(stored), want: "a file, directory or symlink", found: typeName(st.Mode)})
	}
	if enc != "" {
		// A long name's sidecar must hold the name that hashes to it.
		if _, err := readSidecar(d, stored); err != nil {
			return nil, n.fs.lookupErrno(name, err)
		}
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	if err := ino.Operations().(*node).fillAttr(d, stored, &st, &out.Attr); err != nil {
		return nil, n.fs.lookupErrno(name, err)
	}
	return ino, 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	d, err := n.openDir()
	if err != nil {
		return nil, n.fs.errno("readdir", n.plainPath(), err)
	}
	defer d.close()
	ents, err := readDirents(d, -1)
	if err != nil {
		return nil, n.fs.errno("readdir", n.plainPath(), err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		stored := e.Name()
		if names.IsReserved(stored) {
			continue
		}
		mode := direntMode(e.Type())
		if isSpecial(mode) {
			if err := n.fs.checkSpecialEntry(d, stored); err != nil {
				n.fs.refuse("readdir", n.plainPath(), err)
				continue
			}
		}
		enc := stored
		if names.IsLong(stored) {
			if enc, err = readSidecar(d, stored); err != nil {
				n.skipName(d, stored, err)
				continue
			}
		}
		name, err := n.fs.cfg.Names.Decrypt(enc, d.iv)
		if err != nil {
			n.skipName(d, stored, err)
			continue
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: mode})
	}
	return gofs.NewListDirStream(list), 0
}

// readDirents lists the open cipher directory d (at most max entries; all
// when max < 0).
func readDirents(d cdir, max int) ([]os.DirEntry, error) {
	fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	// Named by its /proc/self/fd link: where the file system gives no
	// entry types, ReadDir lstats parent/name, which must be this very
	// directory (never a path resolved anew).
	f := os.NewFile(uintptr(fd), procPath(fd))
	defer f.Close()
	ents, err := f.ReadDir(max)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return ents, err
}

// direntMode converts a Go file type to the S_IF bits of a dirent.
func direntMode(t os.FileMode) uint32 {
	switch {
	case t.IsDir():
		return syscall.S_IFDIR
	case t&os.ModeSymlink != 0:
		return syscall.S_IFLNK
	case t&os.ModeNamedPipe != 0:
		return syscall.S_IFIFO
	case t&os.ModeSocket != 0:
		return syscall.S_IFSOCK
	case t&os.ModeCharDevice != 0:
		return syscall.S_IFCHR
	case t&os.ModeDevice != 0:
		return syscall.S_IFBLK
	}
	return syscall.S_IFREG
}

// skipName logs and counts a directory entry left out of a listing.
func (n *node) skipName(d cdir, stored string, err error) {
	n.fs.stats.BadNames.Add(1)
	n.fs.log.Warn("skipping a directory entry whose name does not decrypt", "dir", n.plainPath(), "cipher_dir", n.fs.abs(d.rel), "cipher_name", stored, "err", err)
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, stored, enc, errno := n.entryIn("mkdir", name)
	if errno != 0 {
		return nil, errno
	}
	defer d.close()
	if err := writeSidecar(d, stored, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	// Created private, IV written, then given its mode: a directory never
	// exists without its IV with a mode that lets others write in it.
	if err := unix.Mkdirat(d.fd, stored, 0o700); err != nil {
		removeSidecar(d, stored, enc)
		return nil, gofs.ToErrno(err)
	}
	var iv names.DirID
	var st syscall.Stat_t
	var gen uint64
	nfd, err := unix.Openat(d.fd, stored, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == nil {
		defer unix.Close(nfd)
		// A fresh ID, sealed for this place: the parent's ID and the
		// directory's own stored name.
		if iv, err = n.fs.cfg.Names.CreateDirIV(nfd, names.ChildLoc(d.iv, stored)); err == nil {
			perm := mode & 07777
			if setgidDir(d) {
				perm |= syscall.S_ISGID // inherited, as mkdir(2) does
			}
			if err = unix.Fchmod(nfd, perm); err == nil {
				gen, err = statx(nfd, "", &st)
			}
		}
		if err != nil {
			unix.Unlinkat(nfd, names.DirIVFile, 0)
		}
	}
	if err != nil {
		unix.Unlinkat(d.fd, stored, unix.AT_REMOVEDIR)
		removeSidecar(d, stored, enc)
		return nil, n.fs.errno("mkdir", name, typeError(d.fd, d.join(stored), stored, "a directory", err))
	}
	chownCaller(ctx, d, nfd)
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs, iv: iv, ivOK: true})
	out.FromStat(&st)
	out.Ino = n.fs.inodeNumber(&st)
	return ino, 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	d, stored, enc, errno := n.entryIn("rmdir", name)
	if errno != 0 {
		return errno
	}
	defer d.close()
	c, err := openChildDir(d, stored)
	if err != nil {
		return n.fs.errno("rmdir", name, err)
	}
	defer c.close()
	ents, err := readDirents(c, 3)
	if err != nil {
		return gofs.ToErrno(err)
	}
	for _, e := range ents {
		if !isDirIVFile(e.Name()) {
			return syscall.ENOTEMPTY
		}
	}
	// The IV goes first (rmdir needs an empty directory); it is written
	// back if the rmdir fails.
	loc := names.ChildLoc(d.iv, stored)
	iv, err := n.fs.readDirIV(c, loc)
	if err != nil {
		return n.fs.errno("rmdir", name, err)
	}
	if err := names.RemoveDirIV(c.fd); err != nil {
		return n.fs.errno("rmdir", name, err)
	}
	if err := unix.Unlinkat(d.fd, stored, unix.AT_REMOVEDIR); err != nil {
		// Something appeared meanwhile: put the IV back.
		if rerr := n.fs.cfg.Names.RestoreDirIV(c.fd, iv, loc); rerr != nil {
			n.fs.log.Error("rmdir failed and the directory IV could not be restored", "dir", name, "cipher_dir", n.fs.abs(c.rel), "err", rerr)
		}
		return gofs.ToErrno(err)
	}
	removeSidecar(d, stored, enc)
	return 0
}

// openChildDir opens directory stored of d for reading (listing, and as
// the directory descriptor of its own entries); its IV is not read.
func openChildDir(d cdir, stored string) (cdir, error) {
	fd, err := unix.Openat(d.fd, stored, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return cdir{}, typeError(d.fd, d.join(stored), stored, "a directory", err)
	}
	return cdir{fd: fd, rel: d.join(stored), owns: true}, nil
}
