package fusefs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/names"
)

// node is a file, directory or symlink of the plaintext view. It keeps no
// path: the cipher path is rebuilt from the kernel-facing tree (plaintext
// names and parents, which go-fuse keeps up to date on rename) by
// encrypting each name under its parent directory's IV.
type node struct {
	gofs.Inode
	fs *FS

	// mu guards the fields below. Lock order: node.mu, then content.mu.
	mu      sync.Mutex
	iv      names.DirIV // a directory's IV, once read
	ivOK    bool
	hdrSize int      // a regular file's header size, once read
	c       *content // a regular file's shared open state, while open
}

var (
	_ gofs.NodeLookuper   = (*node)(nil)
	_ gofs.NodeReaddirer  = (*node)(nil)
	_ gofs.NodeGetattrer  = (*node)(nil)
	_ gofs.NodeSetattrer  = (*node)(nil)
	_ gofs.NodeCreater    = (*node)(nil)
	_ gofs.NodeOpener     = (*node)(nil)
	_ gofs.NodeMkdirer    = (*node)(nil)
	_ gofs.NodeRmdirer    = (*node)(nil)
	_ gofs.NodeUnlinker   = (*node)(nil)
	_ gofs.NodeRenamer    = (*node)(nil)
	_ gofs.NodeLinker     = (*node)(nil)
	_ gofs.NodeSymlinker  = (*node)(nil)
	_ gofs.NodeReadlinker = (*node)(nil)
	_ gofs.NodeStatfser   = (*node)(nil)
	_ gofs.NodeFsyncer    = (*node)(nil)
)

// plainPath is the node's path in the mount, for logs.
func (n *node) plainPath() string {
	return "/" + n.Path(n.Root())
}

// dirIV returns the IV of directory n, whose cipher path is cp, reading it
// the first time (a directory's IV never changes; it moves with the
// directory on rename).
func (n *node) dirIV(cp string) (names.DirIV, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ivOK {
		return n.iv, nil
	}
	iv, err := names.ReadDirIV(cp)
	if err != nil {
		return iv, err
	}
	n.iv, n.ivOK = iv, true
	return iv, nil
}

// cpath is the cipher path of n. An unlinked node has none (ESTALE).
func (n *node) cpath() (string, error) {
	var chain []*gofs.Inode
	var nameOf []string
	cur := n.EmbeddedInode()
	for !cur.IsRoot() {
		name, parent := cur.Parent()
		if parent == nil {
			return "", syscall.ESTALE
		}
		chain = append(chain, parent)
		nameOf = append(nameOf, name)
		cur = parent
	}
	p := n.fs.cfg.CipherDir
	for i := len(chain) - 1; i >= 0; i-- {
		stored, _, err := chain[i].Operations().(*node).child(p, nameOf[i])
		if err != nil {
			return "", err
		}
		p = filepath.Join(p, stored)
	}
	return p, nil
}

// child returns the stored name of the entry name in directory n (cipher
// path cp), and the full encrypted name when it is a long name.
func (n *node) child(cp, name string) (stored, longEnc string, err error) {
	iv, err := n.dirIV(cp)
	if err != nil {
		return "", "", err
	}
	enc, err := n.fs.cfg.Names.Encrypt(name, iv)
	if err != nil {
		return "", "", err
	}
	stored, long := names.Stored(enc)
	if long {
		return stored, enc, nil
	}
	return stored, "", nil
}

// childPath is the cipher path of entry name of directory n, and the
// long name's full encrypted name (or "").
func (n *node) childPath(name string) (dir, path, longEnc string, err error) {
	dir, err = n.cpath()
	if err != nil {
		return "", "", "", err
	}
	stored, longEnc, err := n.child(dir, name)
	if err != nil {
		return "", "", "", err
	}
	return dir, filepath.Join(dir, stored), longEnc, nil
}

// openFile opens a cipher file. Unlike os.OpenFile it does not try to add
// the descriptor to the runtime poller (one epoll_ctl per open, which
// always fails for a regular file).
func openFile(path string, flags int, mode uint32) (*os.File, error) {
	fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC, mode)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// writeSidecar stores the full encrypted name of the long name at path.
// An existing sidecar (the entry is being replaced) holds the same name,
// since the stored name is its hash; one that differs is replaced.
func writeSidecar(path, enc string) error {
	if enc == "" {
		return nil
	}
	sc := path + names.LongNameSuffix
	err := writeNew(sc, enc)
	if errors.Is(err, fs.ErrExist) {
		if b, rerr := os.ReadFile(sc); rerr == nil && string(b) == enc {
			return nil
		}
		if err = os.Remove(sc); err == nil {
			err = writeNew(sc, enc)
		}
	}
	return err
}

func writeNew(path, data string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

func removeSidecar(path, enc string) {
	if enc != "" {
		os.Remove(path + names.LongNameSuffix)
	}
}

// newChild makes the inode of a child whose cipher entry has st and gen
// (from statx).
func (n *node) newChild(ctx context.Context, st *syscall.Stat_t, gen uint64, ch *node) *gofs.Inode {
	return n.NewInode(ctx, ch, gofs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: n.fs.inodeNumber(st), Gen: gen})
}

// headerSize returns the header size of the regular file at cp.
func (n *node) headerSize(cp string) (int, error) {
	n.mu.Lock()
	hs := n.hdrSize
	n.mu.Unlock()
	if hs != 0 {
		return hs, nil
	}
	f, err := openFile(cp, syscall.O_RDONLY, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h, err := format.ReadHeader(io.NewSectionReader(f, 0, format.MaxHeaderSize))
	if err != nil {
		return 0, err
	}
	n.mu.Lock()
	n.hdrSize = h.Size()
	n.mu.Unlock()
	return h.Size(), nil
}

// fillAttr converts the cipher entry's stat into the plaintext attributes:
// the plaintext size of a regular file (from its open state when open),
// the target length of a symlink.
func (n *node) fillAttr(cp string, st *syscall.Stat_t, out *fuse.Attr) {
	out.FromStat(st)
	out.Ino = n.fs.inodeNumber(st)
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFREG:
		n.mu.Lock()
		c := n.c
		n.mu.Unlock()
		if c != nil {
			out.Size = uint64(c.size())
			return
		}
		out.Size = 0
		hs, err := n.headerSize(cp)
		if err != nil {
			n.fs.log.Warn("cannot read the header for the size; reporting 0", "file", n.plainPath(), "err", err)
			return
		}
		if ps, err := format.PlaintextSize(hs, st.Size); err == nil {
			out.Size = uint64(ps)
		} else {
			n.fs.log.Warn("encrypted file size is invalid; reporting 0", "file", n.plainPath(), "err", err)
		}
	case syscall.S_IFLNK:
		if t, err := n.readlink(cp); err == nil {
			out.Size = uint64(len(t))
		}
	}
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return nil, n.fs.errno("lookup", name, err)
	}
	var st syscall.Stat_t
	gen, err := statx(0, cp, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	if enc != "" {
		// A long name's sidecar must hold the name that hashes to it.
		b, err := os.ReadFile(cp + names.LongNameSuffix)
		if err != nil {
			return nil, n.fs.errno("lookup", name, names.ErrBadName)
		}
		if err := names.CheckSidecar(filepath.Base(cp), string(b)); err != nil {
			return nil, n.fs.errno("lookup", name, err)
		}
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	ino.Operations().(*node).fillAttr(cp, &st, &out.Attr)
	return ino, 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	cp, err := n.cpath()
	if err != nil {
		return nil, n.fs.errno("readdir", n.plainPath(), err)
	}
	iv, err := n.dirIV(cp)
	if err != nil {
		return nil, n.fs.errno("readdir", n.plainPath(), err)
	}
	d, err := os.Open(cp)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	list := make([]fuse.DirEntry, 0, len(ents))
	for _, e := range ents {
		stored := e.Name()
		if stored == names.DirIVFile || stored == names.VolumeFile || names.IsSidecar(stored) {
			continue
		}
		enc := stored
		if names.IsLong(stored) {
			b, err := os.ReadFile(filepath.Join(cp, names.Sidecar(stored)))
			if err == nil {
				err = names.CheckSidecar(stored, string(b))
			}
			if err != nil {
				n.skipName(cp, stored, err)
				continue
			}
			enc = string(b)
		}
		name, err := n.fs.cfg.Names.Decrypt(enc, iv)
		if err != nil {
			n.skipName(cp, stored, err)
			continue
		}
		list = append(list, fuse.DirEntry{Name: name, Mode: direntMode(e.Type())})
	}
	return gofs.NewListDirStream(list), 0
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
func (n *node) skipName(dir, stored string, err error) {
	n.fs.stats.BadNames.Add(1)
	n.fs.log.Warn("skipping a directory entry whose name does not decrypt", "dir", n.plainPath(), "cipher_dir", dir, "cipher_name", stored, "err", err)
}

func (n *node) Getattr(ctx context.Context, fh gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.Getattr(ctx, out)
	}
	cp, err := n.cpath()
	if err != nil {
		n.mu.Lock()
		c := n.c
		n.mu.Unlock()
		if c != nil { // unlinked but open
			return c.getattr(out)
		}
		return n.fs.errno("getattr", n.plainPath(), err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(cp, &st); err != nil {
		return gofs.ToErrno(err)
	}
	n.fillAttr(cp, &st, &out.Attr)
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
	// open cipher file anyway: no path to rebuild.
	n.mu.Lock()
	c := n.c
	if c != nil {
		c.refs++
	}
	n.mu.Unlock()
	if c != nil {
		defer n.release(c)
		return (&handle{c: c}).setattr(in, out)
	}
	cp, err := n.cpath()
	if err != nil {
		return n.fs.errno("setattr", n.plainPath(), err)
	}
	if errno := setattrAt(cp, in); errno != 0 {
		return errno
	}
	// Truncate before setting times, so an explicit mtime sticks.
	if sz, ok := in.GetSize(); ok {
		c, errno := n.open(ctx, cp)
		if errno != 0 {
			return errno
		}
		err := c.truncate(int64(sz))
		n.release(c)
		if err != nil {
			return n.fs.errno("truncate", n.plainPath(), err)
		}
	}
	if errno := utimensAt(cp, in, false); errno != 0 {
		return errno
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(cp, &st); err != nil {
		return gofs.ToErrno(err)
	}
	n.fillAttr(cp, &st, &out.Attr)
	return 0
}

// setattrAt applies the mode and owner changes of in to path (not
// following a symlink for the owner).
func setattrAt(path string, in *fuse.SetAttrIn) syscall.Errno {
	return setattrWith(in, func(m uint32) error { return syscall.Chmod(path, m) },
		func(u, g int) error { return unix.Fchownat(unix.AT_FDCWD, path, u, g, unix.AT_SYMLINK_NOFOLLOW) })
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

// utimensAt applies the time changes of in to path (nanoseconds), not
// following a symlink unless follow.
func utimensAt(path string, in *fuse.SetAttrIn, follow bool) syscall.Errno {
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
	flags := unix.AT_SYMLINK_NOFOLLOW
	if follow {
		flags = 0
	}
	return gofs.ToErrno(unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, flags))
}

// chownCaller gives a new entry to the user who made it when the mount
// runs as root (as a kernel file system would).
func chownCaller(ctx context.Context, cp string) {
	if os.Geteuid() != 0 {
		return
	}
	if c, ok := fuse.FromContext(ctx); ok && (c.Uid != 0 || c.Gid != 0) {
		_ = unix.Lchown(cp, int(c.Uid), int(c.Gid))
	}
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return nil, nil, 0, n.fs.errno("create", name, err)
	}
	if err := writeSidecar(cp, enc); err != nil {
		return nil, nil, 0, gofs.ToErrno(err)
	}
	osf, err := openFile(cp, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL, mode&07777)
	if err != nil {
		removeSidecar(cp, enc)
		return nil, nil, 0, gofs.ToErrno(err)
	}
	fail := func(err error) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
		osf.Close()
		os.Remove(cp)
		removeSidecar(cp, enc)
		return nil, nil, 0, n.fs.errno("create", name, err)
	}
	chownCaller(ctx, cp)
	dek, wk, err := n.fs.cfg.Envelope.NewDEK(ctx, n.fs.cfg.Tenant, format.Purpose)
	if err != nil {
		return fail(err)
	}
	n.fs.stats.NewKeys.Add(1)
	ff, err := format.CreateFile(osf, &dek, wk, format.WithPath(cp))
	if err == nil {
		n.fs.cache.put(wk, &dek)
	}
	dek.Zero()
	if err != nil {
		return fail(err)
	}
	var st syscall.Stat_t
	gen, err := statx(int(osf.Fd()), "", &st)
	if err != nil {
		return fail(err)
	}
	ch := &node{fs: n.fs, hdrSize: ff.Header().Size()}
	ino := n.newChild(ctx, &st, gen, ch)
	chn := ino.Operations().(*node)
	c := &content{n: chn, osf: osf, f: ff, path: cp, dirty: true}
	chn.mu.Lock()
	if chn.c != nil {
		// The inode number was reused by a node still open: keep ours apart.
		chn.mu.Unlock()
		return fail(syscall.EIO)
	}
	chn.c, c.refs = c, 1
	chn.hdrSize = ff.Header().Size()
	chn.mu.Unlock()
	out.FromStat(&st)
	out.Ino = n.fs.inodeNumber(&st)
	out.Size = 0
	return ino, &handle{c: c, append: flags&syscall.O_APPEND != 0}, 0, 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	cp, err := n.cpath()
	if err != nil {
		return nil, 0, n.fs.errno("open", n.plainPath(), err)
	}
	c, errno := n.open(ctx, cp)
	if errno != 0 {
		return nil, 0, errno
	}
	if flags&syscall.O_TRUNC != 0 && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		if err := c.truncate(0); err != nil {
			n.release(c)
			return nil, 0, n.fs.errno("open", n.plainPath(), err)
		}
	}
	return &handle{c: c, append: flags&syscall.O_APPEND != 0}, 0, 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return nil, n.fs.errno("mkdir", name, err)
	}
	if err := writeSidecar(cp, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	// Created private, IV written, then given its mode: a directory never
	// exists without its IV with a mode that lets others write in it.
	if err := syscall.Mkdir(cp, 0o700); err != nil {
		removeSidecar(cp, enc)
		return nil, gofs.ToErrno(err)
	}
	iv, err := names.WriteDirIV(cp)
	if err == nil {
		err = syscall.Chmod(cp, mode&07777)
	}
	var st syscall.Stat_t
	var gen uint64
	if err == nil {
		gen, err = statx(0, cp, &st)
	}
	if err != nil {
		os.Remove(filepath.Join(cp, names.DirIVFile))
		syscall.Rmdir(cp)
		removeSidecar(cp, enc)
		return nil, n.fs.errno("mkdir", name, err)
	}
	chownCaller(ctx, cp)
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs, iv: iv, ivOK: true})
	out.FromStat(&st)
	out.Ino = n.fs.inodeNumber(&st)
	return ino, 0
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return n.fs.errno("rmdir", name, err)
	}
	d, err := os.Open(cp)
	if err != nil {
		return gofs.ToErrno(err)
	}
	ents, err := d.Readdirnames(2)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return gofs.ToErrno(err)
	}
	for _, e := range ents {
		if e != names.DirIVFile {
			return syscall.ENOTEMPTY
		}
	}
	iv, err := names.ReadDirIV(cp)
	if err != nil {
		return n.fs.errno("rmdir", name, err)
	}
	if err := os.Remove(filepath.Join(cp, names.DirIVFile)); err != nil {
		return gofs.ToErrno(err)
	}
	if err := syscall.Rmdir(cp); err != nil {
		// Something appeared meanwhile: put the IV back.
		if rerr := names.RestoreDirIV(cp, iv); rerr != nil {
			n.fs.log.Error("rmdir failed and the directory IV could not be restored", "dir", name, "err", rerr)
		}
		return gofs.ToErrno(err)
	}
	removeSidecar(cp, enc)
	return 0
}

// emptyCipherDir reports whether dir is a directory holding only its IV.
func emptyCipherDir(dir string) bool {
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	defer d.Close()
	ents, err := d.Readdirnames(2)
	return (err == nil || errors.Is(err, io.EOF)) && len(ents) == 1 && ents[0] == names.DirIVFile
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return n.fs.errno("unlink", name, err)
	}
	if err := syscall.Unlink(cp); err != nil {
		return gofs.ToErrno(err)
	}
	removeSidecar(cp, enc)
	return 0
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	np, ok := newParent.(*node)
	if !ok || np.fs != n.fs {
		return syscall.EXDEV
	}
	_, from, fromEnc, err := n.childPath(name)
	if err != nil {
		return n.fs.errno("rename", name, err)
	}
	_, to, toEnc, err := np.childPath(newName)
	if err != nil {
		return n.fs.errno("rename", newName, err)
	}
	// The name is encrypted again under the target directory's IV. On
	// exchange both names stay where they are, so their sidecars do too.
	if flags&unix.RENAME_EXCHANGE == 0 {
		if err := writeSidecar(to, toEnc); err != nil {
			return gofs.ToErrno(err)
		}
	}
	err = unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, uint(flags))
	if (errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST)) && flags == 0 && emptyCipherDir(to) {
		// The target is an empty directory but for its IV: replace it, as
		// rename(2) replaces an empty directory.
		iv, ierr := names.ReadDirIV(to)
		if ierr != nil {
			return n.fs.errno("rename", newName, ierr)
		}
		if err = os.Remove(filepath.Join(to, names.DirIVFile)); err == nil {
			if err = unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, 0); err != nil {
				if rerr := names.RestoreDirIV(to, iv); rerr != nil {
					n.fs.log.Error("rename failed and the target directory's IV could not be restored", "dir", newName, "err", rerr)
				}
			}
		}
	}
	if err != nil {
		return gofs.ToErrno(err)
	}
	if flags&unix.RENAME_EXCHANGE == 0 {
		removeSidecar(from, fromEnc)
	}
	return 0
}

func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	t, ok := target.(*node)
	if !ok || t.fs != n.fs {
		return nil, syscall.EXDEV
	}
	from, err := t.cpath()
	if err != nil {
		return nil, n.fs.errno("link", name, err)
	}
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return nil, n.fs.errno("link", name, err)
	}
	if err := writeSidecar(cp, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if err := syscall.Link(from, cp); err != nil {
		removeSidecar(cp, enc)
		return nil, gofs.ToErrno(err)
	}
	var st syscall.Stat_t
	gen, err := statx(0, cp, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	ino.Operations().(*node).fillAttr(cp, &st, &out.Attr)
	return ino, 0
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	_, cp, enc, err := n.childPath(name)
	if err != nil {
		return nil, n.fs.errno("symlink", name, err)
	}
	sealed, err := n.fs.cfg.Names.EncryptSymlink(target)
	if err != nil {
		return nil, syscall.ENAMETOOLONG
	}
	if err := writeSidecar(cp, enc); err != nil {
		return nil, gofs.ToErrno(err)
	}
	if err := syscall.Symlink(sealed, cp); err != nil {
		removeSidecar(cp, enc)
		return nil, gofs.ToErrno(err)
	}
	chownCaller(ctx, cp)
	var st syscall.Stat_t
	gen, err := statx(0, cp, &st)
	if err != nil {
		return nil, gofs.ToErrno(err)
	}
	ino := n.newChild(ctx, &st, gen, &node{fs: n.fs})
	out.FromStat(&st)
	out.Size = uint64(len(target))
	return ino, 0
}

func (n *node) readlink(cp string) (string, error) {
	sealed, err := os.Readlink(cp)
	if err != nil {
		return "", err
	}
	return n.fs.cfg.Names.DecryptSymlink(sealed)
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	cp, err := n.cpath()
	if err != nil {
		return nil, n.fs.errno("readlink", n.plainPath(), err)
	}
	t, err := n.readlink(cp)
	if err != nil {
		return nil, n.fs.errno("readlink", n.plainPath(), err)
	}
	return []byte(t), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.fs.cfg.CipherDir, &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStatfsT(&st)
	return 0
}

func (n *node) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	if h, ok := fh.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	return 0
}
