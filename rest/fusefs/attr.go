package fusefs

// Attributes: getattr, and setattr (chmod, chown, utimens, truncate).

import (
	"context"
	"io"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/format"
)

// headerSize returns the header size of regular file stored in d (n's
// cipher entry, whose stat is st), reading the header the first time
// without n.mu held.
func (n *node) headerSize(d cdir, stored string, st *syscall.Stat_t) (int, error) {
	n.mu.Lock()
	hs := n.hdrSize
	n.mu.Unlock()
	if hs != 0 {
		return hs, nil
	}
	fd, err := openSeen(d, stored, st)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	h, err := format.ReadHeader(io.NewSectionReader(fdReaderAt(fd), 0, format.MaxHeaderSize))
	if err != nil {
		return 0, err
	}
	n.mu.Lock()
	n.hdrSize = h.Size()
	n.mu.Unlock()
	return h.Size(), nil
}

// fillAttr converts the stat st of n's cipher entry stored in d into the
// plaintext attributes: the plaintext size of a regular file (from its
// open state when open), the target length of a symlink. An error means
// the entry is not what it claims (a planted symlink, a file swapped for
// something else): the caller refuses it.
func (n *node) fillAttr(d cdir, stored string, st *syscall.Stat_t, out *fuse.Attr) error {
	out.FromStat(st)
	out.Ino = n.fs.inodeNumber(st)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		n.mu.Lock()
		c := n.c
		n.mu.Unlock()
		if c != nil {
			out.Size = uint64(c.size())
			return nil
		}
		out.Size = 0
		hs, err := n.headerSize(d, stored, st)
		if isEntryError(err) {
			return err
		}
		if err != nil {
			n.fs.log.Warn("cannot read the header for the size; reporting 0", "file", n.plainPath(), "err", err)
			return nil
		}
		if ps, err := format.PlaintextSize(hs, st.Size); err == nil {
			out.Size = uint64(ps)
		} else {
			n.fs.log.Warn("encrypted file size is invalid; reporting 0", "file", n.plainPath(), "err", err)
		}
	case syscall.S_IFLNK:
		t, err := n.fs.readlinkAt(d, stored)
		if err != nil {
			return err
		}
		out.Size = uint64(len(t))
	case syscall.S_IFDIR:
	case syscall.S_IFIFO, syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFSOCK:
		return n.fs.checkMarker(d, stored, st)
	default:
		return &entryError{path: d.join(stored), want: "a file, directory, symlink or special file", found: typeName(st.Mode)}
	}
	return nil
}

func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.Getattr(ctx, out)
	}
	if n.IsRoot() {
		return n.getattrRoot(out)
	}
	d, stored, err := n.parentDir()
	if err != nil {
		if c := n.acquire(); c != nil { // unlinked but open
			defer n.release(c)
			return c.getattr(out)
		}
		return n.fs.errno("getattr", n.plainPath(), err)
	}
	defer d.close()
	var st syscall.Stat_t
	if _, err := statx(d.fd, stored, &st); err != nil {
		return gofs.ToErrno(err)
	}
	if err := checkType(d.join(stored), st.Mode, n.kind()); err != nil {
		return n.fs.errno("getattr", n.plainPath(), err)
	}
	return n.fs.errno("getattr", n.plainPath(), n.fillAttr(d, stored, &st, &out.Attr))
}

func (n *node) getattrRoot(out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if _, err := statx(n.fs.rootFD, "", &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStat(&st)
	out.Ino = n.fs.inodeNumber(&st)
	return 0
}

func (n *node) Setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	errno := n.setattr(ctx, fh, in, out)
	if errno == 0 {
		// go-fuse sets no attribute timeout on a SETATTR reply, so the
		// kernel would ask again at once (a GETATTR per extracted file).
		out.SetTimeout(attrTimeout)
	}
	return errno
}

func (n *node) setattr(ctx context.Context, fh gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.setattr(in, out)
	}
	// The kernel passes a handle only for ftruncate; for fchmod, fchown
	// and futimens of an open file (tar does all three per file) use the
	// open cipher file anyway: nothing to resolve.
	if c := n.acquire(); c != nil {
		defer n.release(c)
		return (&handle{c: c}).setattr(in, out)
	}
	if n.IsRoot() {
		return n.setattrEntry(cdir{fd: n.fs.rootFD, rel: "."}, "", n.fs.rootFD, in, out)
	}
	d, stored, err := n.parentDir()
	if err != nil {
		return n.fs.errno("setattr", n.plainPath(), err)
	}
	defer d.close()
	pfd, st, err := openPath(d, stored, n.kind())
	if err != nil {
		return n.fs.errno("setattr", n.plainPath(), err)
	}
	defer unix.Close(pfd)
	_, truncate := in.GetSize()
	if n.kind() == syscall.S_IFREG && (truncate || st.Nlink > 1) {
		// A truncate needs the file's key. A hard-linked file may have a
		// name outside the cipher directory (planted there as a link to
		// a host file): its metadata changes only once its header has
		// authenticated as this tenant's, through the open file.
		c, errno := n.open(ctx)
		if errno != 0 {
			return errno
		}
		defer n.release(c)
		return (&handle{c: c}).setattr(in, out)
	}
	if isSpecial(n.kind()) {
		// A special node's marker must open for it before anything changes.
		if err := n.fs.checkMarker(d, stored, &st); err != nil {
			return n.fs.errno("setattr", n.plainPath(), err)
		}
	}
	if n.kind() == syscall.S_IFLNK && st.Nlink > 1 {
		// Likewise a hard-linked symlink: its sealed target must open.
		if _, err := n.fs.readlinkAt(d, stored); err != nil {
			return n.fs.errno("setattr", n.plainPath(), err)
		}
	}
	return n.setattrEntry(d, stored, pfd, in, out)
}

// setattrEntry applies in (mode, owner, times; no size) to n's cipher
// entry stored in d, open as the O_PATH descriptor pfd: through pfd and
// its /proc/self/fd link, so it acts on the inode that was checked, never
// on a symlink's target. A symlink's own mode cannot be changed on Linux.
func (n *node) setattrEntry(d cdir, stored string, pfd int, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	link := n.kind() == syscall.S_IFLNK
	errno := setattrWith(in, func(m uint32) error {
		if link {
			return syscall.EOPNOTSUPP
		}
		return unix.Fchmodat(unix.AT_FDCWD, procPath(pfd), m, 0)
	}, func(u, g int) error { return unix.Fchownat(pfd, "", u, g, unix.AT_EMPTY_PATH) })
	if errno != 0 {
		return errno
	}
	if link {
		// utimensat cannot take an O_PATH symlink; by name, not following.
		errno = utimensAt(d.fd, stored, in, unix.AT_SYMLINK_NOFOLLOW)
	} else {
		errno = utimensAt(unix.AT_FDCWD, procPath(pfd), in, 0)
	}
	if errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	if _, err := statx(pfd, "", &st); err != nil {
		return gofs.ToErrno(err)
	}
	if n.IsRoot() {
		out.FromStat(&st)
		out.Ino = n.fs.inodeNumber(&st)
		return 0
	}
	return n.fs.errno("setattr", n.plainPath(), n.fillAttr(d, stored, &st, &out.Attr))
}

// setattrWith applies the mode and owner changes of in with chmod and
// chown.
func setattrWith(in *fuse.SetAttrIn, chmod func(uint32) error, chown func(uid, gid int) error) syscall.Errno {
	if m, ok := in.GetMode(); ok {
		if err := chmod(m & 07777); err != nil {
			return gofs.ToErrno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		su, sg := -1, -1
		if uok {
			su = int(uid)
		}
		if gok {
			sg = int(gid)
		}
		if err := chown(su, sg); err != nil {
			return gofs.ToErrno(err)
		}
	}
	return 0
}

// utimensAt applies the time changes of in (nanoseconds) to path in
// dirfd, with flags (AT_SYMLINK_NOFOLLOW, or 0 for a /proc/self/fd link).
func utimensAt(dirfd int, path string, in *fuse.SetAttrIn, flags int) syscall.Errno {
	mt, mok := in.GetMTime()
	at, aok := in.GetATime()
	if !mok && !aok {
		return 0
	}
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
	if aok {
		ts[0] = unix.NsecToTimespec(at.UnixNano())
	}
	if mok {
		ts[1] = unix.NsecToTimespec(mt.UnixNano())
	}
	return gofs.ToErrno(unix.UtimesNanoAt(dirfd, path, ts, flags))
}
