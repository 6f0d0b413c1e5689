package fusefs

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/format"
)

// content is the open state of a regular file, shared by all its open
// handles (and hard links), so that every handle sees one size and one
// sequence of writes.
type content struct {
	n    *node
	refs int // open handles; guarded by n.mu

	mu  sync.RWMutex
	osf *os.File
	f   *format.File // writes and truncates; guarded by mu (exclusive)
	// ra serves reads concurrently (it batches block reads) while the
	// file is not being written; a write drops it. Guarded by mu.
	ra *format.ReaderAt
	// dirty: written since ra was dropped; cleanReads counts reads since
	// the last write, and ra is rebuilt after a few. Guarded by mu.
	dirty      bool
	cleanReads int
	path       string // cipher path at open, for errors
}

// rebuildAfter is how many reads without a write it takes to rebuild the
// batched reader: rebuilding reads the header and the final block again.
const rebuildAfter = 4

func (c *content) size() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.f.Size()
}

// readAt reads plaintext; io.EOF is not an error here.
func (c *content) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	c.mu.RLock()
	if ra := c.ra; ra != nil {
		n, err := ra.ReadAt(p, off)
		c.mu.RUnlock()
		return n, err
	}
	c.mu.RUnlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ra == nil && !c.dirty {
		size := format.CiphertextSize(c.f.Header().Size(), c.f.Size())
		ra, err := format.OpenReaderAt(c.osf, size, c.n.fs.unwrapper(ctx), format.WithPath(c.path))
		if err != nil {
			return 0, err
		}
		c.ra = ra
	}
	if c.ra != nil {
		return c.ra.ReadAt(p, off)
	}
	if c.cleanReads++; c.cleanReads >= rebuildAfter {
		c.dirty = false
	}
	return c.f.ReadAt(p, off)
}

func (c *content) writeAt(p []byte, off int64, appendMode bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if appendMode {
		off = c.f.Size()
	}
	c.ra, c.dirty, c.cleanReads = nil, true, 0
	return c.f.WriteAt(p, off)
}

func (c *content) truncate(size int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ra, c.dirty, c.cleanReads = nil, true, 0
	return c.f.Truncate(size)
}

func (c *content) getattr(out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(c.osf.Fd()), &st); err != nil {
		return gofs.ToErrno(err)
	}
	out.FromStat(&st)
	out.Ino = c.n.fs.inodeNumber(&st)
	out.Size = uint64(c.size())
	return 0
}

// handle is one open of a regular file.
type handle struct {
	c      *content
	append bool
}

var (
	_ gofs.FileReader    = (*handle)(nil)
	_ gofs.FileWriter    = (*handle)(nil)
	_ gofs.FileGetattrer = (*handle)(nil)
	_ gofs.FileFsyncer   = (*handle)(nil)
	_ gofs.FileFlusher   = (*handle)(nil)
	_ gofs.FileReleaser  = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.c.readAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, h.c.n.fs.errno("read", h.c.n.plainPath(), err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.c.writeAt(data, off, h.append)
	if err != nil {
		return uint32(n), h.c.n.fs.errno("write", h.c.n.plainPath(), err)
	}
	return uint32(n), 0
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	return h.c.getattr(out)
}

// setattr applies in through the open cipher file.
func (h *handle) setattr(in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	fd := int(h.c.osf.Fd())
	if errno := setattrWith(in, func(m uint32) error { return syscall.Fchmod(fd, m) },
		func(u, g int) error { return syscall.Fchown(fd, u, g) }); errno != 0 {
		return errno
	}
	if sz, ok := in.GetSize(); ok {
		if err := h.c.truncate(int64(sz)); err != nil {
			return h.c.n.fs.errno("truncate", h.c.n.plainPath(), err)
		}
	}
	// The descriptor's /proc link reaches the inode even after an unlink
	// or a rename, with nanosecond times (futimens has no Go wrapper).
	if errno := utimensAt(unix.AT_FDCWD, procPath(fd), in, 0); errno != 0 {
		return errno
	}
	return h.c.getattr(out)
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	// Every write reached the cipher file already (no buffering here).
	h.c.mu.RLock()
	defer h.c.mu.RUnlock()
	return gofs.ToErrno(h.c.osf.Sync())
}

func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.c.n.release(h.c)
	return 0
}
