package fusefs

// Open and create: a regular file's shared open state (content, file.go)
// is made here.

import (
	"context"
	"errors"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/format"
)

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	d, stored, enc, errno := n.entryIn("create", name)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	defer d.close()
	if err := writeSidecar(d, stored, enc); err != nil {
		return nil, nil, 0, gofs.ToErrno(err)
	}
	// O_EXCL: a new file, never through a symlink or into a planted one.
	fd, err := unix.Openat(d.fd, stored, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode&07777)
	if err != nil {
		removeSidecar(d, stored, enc)
		return nil, nil, 0, gofs.ToErrno(err)
	}
	cp := n.fs.abs(d.join(stored))
	osf := os.NewFile(uintptr(fd), cp)
	fail := func(err error) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
		osf.Close()
		unix.Unlinkat(d.fd, stored, 0)
		removeSidecar(d, stored, enc)
		return nil, nil, 0, n.fs.errno("create", name, err)
	}
	chownCaller(ctx, d, fd)
	if mode&(syscall.S_ISUID|syscall.S_ISGID) != 0 {
		// The chown cleared them (and the process umask applied).
		if err := unix.Fchmod(fd, mode&07777); err != nil {
			return fail(err)
		}
	}
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
	gen, err := statx(fd, "", &st)
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
	c, errno := n.open(ctx)
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

// open returns n's shared open state, opening it if needed; release it.
// The cipher file is opened and its header read (which may unwrap its key
// through the key backend) without n.mu held; if another open won the
// race meanwhile, its state is used and this one closed.
func (n *node) open(ctx context.Context) (*content, syscall.Errno) {
	if c := n.acquire(); c != nil {
		return c, 0
	}
	d, stored, err := n.parentDir()
	if err != nil {
		return nil, n.fs.errno("open", n.plainPath(), err)
	}
	defer d.close()
	osf, st, err := openRegular(d, stored, unix.O_RDWR)
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EROFS) {
		osf, st, err = openRegular(d, stored, unix.O_RDONLY)
	}
	if err != nil {
		return nil, n.fs.errno("open", n.plainPath(), err)
	}
	cp := n.fs.abs(d.join(stored))
	f, err := format.OpenFile(osf, st.Size, n.fs.unwrapper(ctx), format.WithPath(cp))
	if err != nil {
		osf.Close()
		return nil, n.fs.errno("open", n.plainPath(), err)
	}
	n.mu.Lock()
	if n.c != nil {
		n.c.refs++
		c := n.c
		n.mu.Unlock()
		osf.Close()
		return c, 0
	}
	n.hdrSize = f.Header().Size()
	n.c = &content{n: n, refs: 1, osf: osf, f: f, path: cp}
	c := n.c
	n.mu.Unlock()
	return c, 0
}

// acquire takes a reference to n's open state, if it is open.
func (n *node) acquire() *content {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.c != nil {
		n.c.refs++
	}
	return n.c
}

// release drops one reference to c, closing it with the last (the close
// happens without n.mu held).
func (n *node) release(c *content) {
	n.mu.Lock()
	c.refs--
	last := c.refs == 0
	if last && n.c == c {
		n.c = nil
	}
	n.mu.Unlock()
	if !last {
		return
	}
	c.mu.Lock()
	c.ra = nil
	c.osf.Close()
	c.mu.Unlock()
}
