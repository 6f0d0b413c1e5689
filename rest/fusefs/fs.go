// Package fusefs is the FUSE file system of a tencrypt volume
// (docs/MOUNT.md): a plaintext view of a cipher directory in which every
// file is a rest/format file (own header, own wrapped DEK) and every name
// is encrypted by rest/names. It holds no crypto of its own.
package fusefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/names"
)

// Config is what a mounted volume needs.
type Config struct {
	// CipherDir is the volume's cipher directory (it holds names.VolumeFile).
	CipherDir string
	// Tenant owns the volume: new files' DEKs are wrapped under its current
	// KEK, and files of other tenants are refused (EACCES).
	Tenant string
	// Envelope makes and unwraps file DEKs; every unwrap is audited.
	Envelope *keys.Envelope
	// Names is the volume's name transform.
	Names *names.Transform
	// Caller names the mount in audit records.
	Caller string
	// KeyCache bounds the number of unwrapped file DEKs kept in memory
	// while mounted; 0 means DefaultKeyCache, negative disables the cache.
	KeyCache int
	// Log receives state changes, corruption reports and errors.
	Log *slog.Logger
}

// DefaultKeyCache is the default bound of the DEK cache.
const DefaultKeyCache = 4096

// Stats counts what a mount saw. Read with Snapshot.
type Stats struct {
	CorruptBlocks atomic.Int64 // reads or writes refused because a block did not authenticate
	BadNames      atomic.Int64 // directory entries skipped because their name did not decrypt
	Unwraps       atomic.Int64 // file DEKs unwrapped through the key backend
	CacheHits     atomic.Int64 // file DEKs taken from the cache
	NewKeys       atomic.Int64 // file DEKs made for new files
	// Refused counts cipher entries refused because they were not what the
	// mount makes there: symlinks, FIFOs, devices or sockets planted in the
	// cipher directory, entries that changed type (docs/MOUNT.md).
	Refused atomic.Int64
}

// FS is one volume's file system.
type FS struct {
	cfg   Config
	cache *keyCache
	log   *slog.Logger
	stats Stats
	root  *node
	// rootDev is the cipher directory's device, folded into inode numbers.
	rootDev uint64
	// rootFD is the cipher directory, opened O_PATH at New: every cipher
	// path is resolved from it (path.go). Closed by Close.
	rootFD int
	// openat2 says the kernel resolves a whole path without symlinks in
	// one call (RESOLVE_NO_SYMLINKS|RESOLVE_BENEATH).
	openat2 bool
}

// inodeNumber is the FUSE inode number of a cipher entry. Inode numbers
// are unique only within one file system, and a cipher directory may span
// several (a bind mount, a snapshot inside it), so the device is folded in,
// as go-fuse's loopback does: entries on the cipher directory's own file
// system keep their inode numbers, others get the device's bits mixed in,
// so two files never share one node and its open state.
func (f *FS) inodeNumber(st *syscall.Stat_t) uint64 {
	swap := func(d uint64) uint64 { return d<<32 | d>>32 }
	return swap(f.rootDev) ^ swap(uint64(st.Dev)) ^ st.Ino
}

// New returns the file system of cfg's volume; Root is its root node.
func New(cfg Config) (_ *FS, err error) {
	if cfg.CipherDir == "" || cfg.Envelope == nil || cfg.Names == nil || cfg.Log == nil {
		return nil, errors.New("BUG: fusefs.New needs a cipher directory, an envelope, a name transform and a logger")
	}
	if err := keys.ValidTenant(cfg.Tenant); err != nil {
		return nil, fmt.Errorf("tenant %q: %w", cfg.Tenant, err)
	}
	abs, err := filepath.Abs(cfg.CipherDir)
	if err != nil {
		return nil, err
	}
	cfg.CipherDir = abs
	if cfg.KeyCache == 0 {
		cfg.KeyCache = DefaultKeyCache
	}
	if cfg.Caller == "" {
		cfg.Caller = "tencrypt mount"
	}
	// Resolution reopens checked inodes through /proc/self/fd (path.go).
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		return nil, fmt.Errorf("the mount needs /proc mounted: %w", err)
	}
	rootFD, openat2, err := openRoot(abs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			unix.Close(rootFD)
		}
	}()
	var rst syscall.Stat_t
	if err = syscall.Fstat(rootFD, &rst); err != nil {
		return nil, err
	}
	f := &FS{cfg: cfg, cache: newKeyCache(cfg.KeyCache), log: cfg.Log, rootDev: uint64(rst.Dev), rootFD: rootFD, openat2: openat2}
	iv, err := f.readDirIV(cdir{fd: rootFD, rel: "."}, names.RootLoc())
	if err != nil {
		return nil, err
	}
	f.root = &node{fs: f, iv: iv, ivOK: true}
	return f, nil
}

// Root is the root node, for gofs.Mount.
func (f *FS) Root() gofs.InodeEmbedder { return f.root }

// Stats returns the live counters.
func (f *FS) Stats() *Stats { return &f.stats }

// CachedKeys is the number of DEKs in the cache.
func (f *FS) CachedKeys() int { return f.cache.len() }

// Close zeroes the cached keys and closes the cipher directory; call it
// after the server has stopped.
func (f *FS) Close() {
	f.cache.clear()
	if f.rootFD >= 0 {
		unix.Close(f.rootFD)
		f.rootFD = -1
	}
}

// How long the kernel caches entries and attributes.
const (
	entryTimeout = time.Second
	attrTimeout  = time.Second
)

// MountOptions are the mount's tunables.
type MountOptions struct {
	// AllowOther lets other users use the mount (with kernel permission
	// checks, default_permissions).
	AllowOther bool
	// Debug logs every FUSE request.
	Debug bool
	// MaxWrite is the largest read or write request (default 1 MiB, the
	// kernel's maximum).
	MaxWrite int
}

// Mount mounts f on mountpoint and returns the serving server; the caller
// waits on it (server.Wait) and unmounts it (server.Unmount).
func (f *FS) Mount(mountpoint string, o MountOptions) (*fuse.Server, error) {
	if o.MaxWrite == 0 {
		o.MaxWrite = fuse.MAX_KERNEL_WRITE
	}
	// Entries and attributes are cached one second: everything changes
	// through this mount, so the kernel's view stays right; a change made
	// directly in the cipher directory shows within a second.
	entry, attr := entryTimeout, attrTimeout
	opts := &gofs.Options{
		EntryTimeout: &entry,
		AttrTimeout:  &attr,
		MountOptions: fuse.MountOptions{
			FsName:       f.cfg.CipherDir,
			Name:         "tencrypt",
			AllowOther:   o.AllowOther,
			Debug:        o.Debug,
			MaxWrite:     o.MaxWrite,
			MaxReadAhead: o.MaxWrite,
		},
	}
	if o.AllowOther {
		opts.MountOptions.Options = append(opts.MountOptions.Options, "default_permissions")
	}
	srv, err := gofs.Mount(mountpoint, f.root, opts)
	if err != nil {
		return nil, fmt.Errorf("mount %s on %s: %w (is /dev/fuse there and fusermount3 installed?)", f.cfg.CipherDir, mountpoint, err)
	}
	return srv, nil
}

// unwrapper returns the format.Unwrapper of one request: other tenants
// are refused, cached keys are reused, the rest go to the envelope.
func (f *FS) unwrapper(ctx context.Context) format.Unwrapper {
	return func(wk keys.WrappedKey) (keys.DEK, error) {
		if wk.Tenant != f.cfg.Tenant {
			return keys.DEK{}, fmt.Errorf("the file belongs to tenant %q, not the volume's %q: %w", wk.Tenant, f.cfg.Tenant, keys.ErrPermissionDenied)
		}
		var dek keys.DEK
		if f.cache.get(wk, &dek) {
			f.stats.CacheHits.Add(1)
			return dek, nil
		}
		dek, err := f.cfg.Envelope.Unwrap(ctx, wk, format.Purpose, f.cfg.Caller)
		if err != nil {
			return keys.DEK{}, err
		}
		f.stats.Unwraps.Add(1)
		f.cache.put(wk, &dek)
		return dek, nil
	}
}

// errno maps an error to the errno the kernel gets, logging what an
// operator must see: corruption (naming the file and the block) and key
// failures.
func (f *FS) errno(op, path string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var (
		ce    *format.CorruptError
		errno syscall.Errno
	)
	switch {
	case errors.As(err, &ce):
		f.stats.CorruptBlocks.Add(1)
		block := "header"
		if ce.Block != format.HeaderBlock {
			block = fmt.Sprint(ce.Block)
		}
		f.log.Error("corrupt block: returning EIO", "op", op, "file", path, "block", block, "err", err)
		return syscall.EIO
	case errors.Is(err, format.ErrAuth), errors.Is(err, format.ErrMalformed),
		errors.Is(err, format.ErrNotTencrypt), errors.Is(err, format.ErrUnknownVersion):
		f.stats.CorruptBlocks.Add(1)
		f.log.Error("unreadable encrypted file: returning EIO", "op", op, "file", path, "err", err)
		return syscall.EIO
	case isEntryError(err):
		f.refuse(op, path, err)
		return syscall.EIO
	case errors.Is(err, names.ErrBadDirIV):
		f.log.Error("directory IV unreadable: returning EIO", "op", op, "file", path, "err", err)
		return syscall.EIO
	case errors.Is(err, names.ErrBadName):
		f.log.Error("undecryptable name, sidecar or symlink target: returning EIO", "op", op, "file", path, "err", err)
		return syscall.EIO
	case errors.Is(err, names.ErrBadXattr):
		f.log.Error("extended attribute value does not authenticate: returning EIO", "op", op, "file", path, "err", err)
		return syscall.EIO
	case errors.Is(err, names.ErrInvalidName):
		return syscall.ENAMETOOLONG
	case errors.Is(err, format.ErrTooLarge):
		return syscall.EFBIG
	case errors.Is(err, keys.ErrPermissionDenied):
		f.log.Warn("key refused: returning EACCES", "op", op, "file", path, "err", err)
		return syscall.EACCES
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	f.log.Error("returning EIO", "op", op, "file", path, "err", err)
	return syscall.EIO
}

// lookupErrno is errno for a lookup: an entry refused as planted is
// ENOENT (it is not part of the volume), logged all the same; a directory
// whose IV file is broken stays EIO, as for every other operation in it.
func (f *FS) lookupErrno(name string, err error) syscall.Errno {
	errno := f.errno("lookup", name, err)
	if isEntryError(err) && !errors.Is(err, names.ErrBadDirIV) {
		return syscall.ENOENT
	}
	return errno
}

// refuse logs and counts a cipher entry refused because it is not what
// the mount expects there (an entryError).
func (f *FS) refuse(op, path string, err error) {
	f.stats.Refused.Add(1)
	var e *entryError
	if errors.As(err, &e) {
		f.log.Error("refusing an unexpected entry in the cipher directory", "op", op, "file", path,
			"cipher_path", f.abs(e.path), "found", e.found, "want", e.want)
		return
	}
	f.log.Error("refusing an unexpected entry in the cipher directory", "op", op, "file", path, "err", err)
}

// isEntryError reports whether err comes from an entry of the wrong type.
func isEntryError(err error) bool {
	var e *entryError
	return errors.As(err, &e)
}
