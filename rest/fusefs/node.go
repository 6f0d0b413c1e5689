package fusefs

// The node's operations are split by flow, as gocryptfs's fusefrontend is:
// dir.go (lookup, readdir, mkdir, rmdir), open.go (create, open and the
// shared open state), attr.go (getattr, setattr: chmod, chown, utimens,
// truncate), links.go (symlink, readlink, link, rename, unlink), and the
// descriptor-based resolution of cipher paths they all use in path.go and
// meta.go.

import (
	"context"
	"os"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// node is a file, directory or symlink of the plaintext view. It keeps no
// path: its cipher parent and cipher name come from the kernel-facing tree
// (plaintext names and parents, which go-fuse keeps up to date on rename),
// each name encrypted under its parent directory's IV, and every operation
// resolves them from the cipher directory's descriptor (path.go).
type node struct {
	gofs.Inode
	fs *FS

	// mu guards the fields below. Lock order: node.mu, then content.mu.
	// No file-system call that could block is made with mu held: IVs and
	// headers are read first and stored after, and files are opened and
	// closed outside it.
	mu      sync.Mutex
	iv      names.DirID // a directory's ID, once its IV file was read
	ivOK    bool
	hdrSize int      // a regular file's header size, once read
	c       *content // a regular file's shared open state, while open
}

var (
	_ gofs.NodeLookuper      = (*node)(nil)
	_ gofs.NodeReaddirer     = (*node)(nil)
	_ gofs.NodeGetattrer     = (*node)(nil)
	_ gofs.NodeSetattrer     = (*node)(nil)
	_ gofs.NodeCreater       = (*node)(nil)
	_ gofs.NodeOpener        = (*node)(nil)
	_ gofs.NodeMkdirer       = (*node)(nil)
	_ gofs.NodeRmdirer       = (*node)(nil)
	_ gofs.NodeUnlinker      = (*node)(nil)
	_ gofs.NodeRenamer       = (*node)(nil)
	_ gofs.NodeLinker        = (*node)(nil)
	_ gofs.NodeSymlinker     = (*node)(nil)
	_ gofs.NodeMknoder       = (*node)(nil)
	_ gofs.NodeReadlinker    = (*node)(nil)
	_ gofs.NodeStatfser      = (*node)(nil)
	_ gofs.NodeFsyncer       = (*node)(nil)
	_ gofs.NodeGetxattrer    = (*node)(nil)
	_ gofs.NodeSetxattrer    = (*node)(nil)
	_ gofs.NodeListxattrer   = (*node)(nil)
	_ gofs.NodeRemovexattrer = (*node)(nil)
)

// plainPath is the node's path in the mount, for logs.
func (n *node) plainPath() string {
	return "/" + n.Path(n.Root())
}

// kind is the node's file type (S_IFREG, S_IFDIR, S_IFLNK, or a special
// file's): its cipher entry must keep it.
func (n *node) kind() uint32 { return n.StableAttr().Mode & syscall.S_IFMT }

// newChild makes the inode of a child whose cipher entry has st and gen
// (from statx).
func (n *node) newChild(ctx context.Context, st *syscall.Stat_t, gen uint64, ch *node) *gofs.Inode {
	return n.NewInode(ctx, ch, gofs.StableAttr{Mode: st.Mode & syscall.S_IFMT, Ino: n.fs.inodeNumber(st), Gen: gen})
}

// chownCaller gives the new entry behind fd (an O_PATH descriptor is fine),
// made in directory d, to the user who made it when the mount runs as
// root, as a kernel file system would: its group is the caller's, or d's
// when d is setgid (which the kernel gave it at creation, so it is kept).
// A chown clears a non-directory's setuid and setgid bits: the caller sets
// the mode after.
func chownCaller(ctx context.Context, d cdir, fd int) {
	if os.Geteuid() != 0 {
		return
	}
	if c, ok := fuse.FromContext(ctx); ok && (c.Uid != 0 || c.Gid != 0) {
		gid := int(c.Gid)
		if setgidDir(d) {
			gid = -1
		}
		_ = unix.Fchownat(fd, "", int(c.Uid), gid, unix.AT_EMPTY_PATH)
	}
}

// entryIn opens n's cipher directory and works out the stored and
// encrypted names of the entry name in it (enc is empty unless the name
// needs a long-name sidecar), logging and mapping a failure for op. The
// caller closes d.
func (n *node) entryIn(op, name string) (d cdir, stored, enc string, errno syscall.Errno) {
	d, err := n.openDir()
	if err != nil {
		return d, "", "", n.fs.errno(op, name, err)
	}
	if stored, enc, err = n.fs.childName(d, name); err != nil {
		d.close()
		return d, "", "", n.fs.errno(op, name, err)
	}
	return d, stored, enc, 0
}

// setgidDir reports whether cipher directory d is setgid: its new entries
// take its group, and new directories its setgid bit.
func setgidDir(d cdir) bool {
	var st unix.Stat_t
	return unix.Fstat(d.fd, &st) == nil && st.Mode&unix.S_ISGID != 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(n.fs.rootFD, &st); err != nil {
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
