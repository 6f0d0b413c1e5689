package fusefs

// Extended attributes (docs/MOUNT.md, "Extended attributes"): user.*
// attributes are stored on the cipher entry with their names encrypted
// and their values sealed for the entry and the name (rest/names,
// xattr.go). Nothing else is passed through: the cipher entry's own
// security labels and ACLs belong to the host, not to the tenant.

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/format"
	"github.com/tencrypt/tencrypt/rest/names"
)

// xentry is n's cipher entry opened for its extended attributes: a
// descriptor of that very inode (the f*xattr calls refuse O_PATH ones),
// reached without following a symlink, and the identity its values are
// sealed for.
type xentry struct {
	f    *os.File
	kind byte   // 'f' for a regular file, 'd' for a directory
	id   []byte // the file ID of its header, or the directory's own ID
}

// openXattrs opens n's cipher entry; close x.f. Only regular files and
// directories have user attributes (as on Linux): others are errNoXattrs.
func (n *node) openXattrs() (x xentry, err error) {
	switch n.kind() {
	case syscall.S_IFDIR:
		d, err := n.openDir()
		if err != nil {
			return x, err
		}
		defer d.close()
		fd, err := unix.Openat(d.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return x, err
		}
		id := d.iv
		return xentry{f: os.NewFile(uintptr(fd), d.rel), kind: 'd', id: id[:]}, nil
	case syscall.S_IFREG:
		d, stored, err := n.parentDir()
		if err != nil {
			return x, err
		}
		defer d.close()
		f, _, err := openRegular(d, stored, unix.O_RDONLY)
		if err != nil {
			return x, err
		}
		h, err := format.ReadHeader(io.NewSectionReader(f, 0, format.MaxHeaderSize))
		if err != nil {
			f.Close()
			return x, err
		}
		id := h.FileID
		return xentry{f: f, kind: 'f', id: id[:]}, nil
	}
	return x, errNoXattrs
}

// errNoXattrs: symlinks and special files have no user attributes.
var errNoXattrs = errors.New("no user extended attributes on this file type")

// foreignXattr is the answer for an attribute outside the user
// namespace: security.* reads as absent (a label the host put on the
// cipher entry is not the tenant's, and the kernel asks for
// security.capability on every write) and cannot be set; system.*
// (POSIX ACLs) and trusted.* are not supported.
func foreignXattr(attr string, write bool) syscall.Errno {
	if attr == names.XattrUserPrefix {
		return syscall.EINVAL // an empty name, as Linux answers
	}
	if !write && strings.HasPrefix(attr, "security.") {
		return syscall.ENODATA
	}
	return syscall.EOPNOTSUPP
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, names.XattrUserPrefix) || attr == names.XattrUserPrefix {
		return 0, foreignXattr(attr, false)
	}
	stored, err := n.fs.cfg.Names.EncryptXattrName(attr)
	if err != nil {
		return 0, syscall.ENODATA // it cannot have been set
	}
	x, err := n.openXattrs()
	if errors.Is(err, errNoXattrs) {
		return 0, syscall.ENODATA
	}
	if err != nil {
		return 0, n.fs.errno("getxattr", n.plainPath(), err)
	}
	defer x.f.Close()
	buf := make([]byte, names.XattrValueMax)
	sz, err := unix.Fgetxattr(int(x.f.Fd()), stored, buf)
	if err != nil {
		return 0, gofs.ToErrno(err)
	}
	v, err := n.fs.cfg.Names.OpenXattr(buf[:sz], x.kind, x.id, stored)
	if err != nil {
		return 0, n.fs.errno("getxattr "+attr, n.plainPath(), err)
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

func (n *node) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if !strings.HasPrefix(attr, names.XattrUserPrefix) || attr == names.XattrUserPrefix {
		return foreignXattr(attr, true)
	}
	stored, err := n.fs.cfg.Names.EncryptXattrName(attr)
	if err != nil {
		return syscall.ERANGE // too long once encrypted (docs/MOUNT.md)
	}
	if len(data) > names.XattrMaxPlainValue {
		return syscall.E2BIG
	}
	x, err := n.openXattrs()
	if errors.Is(err, errNoXattrs) {
		return syscall.EPERM
	}
	if err != nil {
		return n.fs.errno("setxattr", n.plainPath(), err)
	}
	defer x.f.Close()
	sealed, err := n.fs.cfg.Names.SealXattr(data, x.kind, x.id, stored)
	if err != nil {
		return n.fs.errno("setxattr", n.plainPath(), err)
	}
	// XATTR_CREATE and XATTR_REPLACE go to the kernel as they are: it
	// checks them atomically against the stored name.
	return gofs.ToErrno(unix.Fsetxattr(int(x.f.Fd()), stored, sealed, int(flags)))
}

func (n *node) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if !strings.HasPrefix(attr, names.XattrUserPrefix) || attr == names.XattrUserPrefix {
		return foreignXattr(attr, true)
	}
	stored, err := n.fs.cfg.Names.EncryptXattrName(attr)
	if err != nil {
		return syscall.ENODATA
	}
	x, err := n.openXattrs()
	if errors.Is(err, errNoXattrs) {
		return syscall.EPERM
	}
	if err != nil {
		return n.fs.errno("removexattr", n.plainPath(), err)
	}
	defer x.f.Close()
	return gofs.ToErrno(unix.Fremovexattr(int(x.f.Fd()), stored))
}

// Listxattr lists the user attributes whose stored names decrypt; others
// on the cipher entry (the host's labels, names planted there) are left
// out, a stored name that does not decrypt with a log line.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	x, err := n.openXattrs()
	if errors.Is(err, errNoXattrs) {
		return 0, 0
	}
	if err != nil {
		return 0, n.fs.errno("listxattr", n.plainPath(), err)
	}
	defer x.f.Close()
	buf := make([]byte, 65536) // XATTR_LIST_MAX
	sz, err := unix.Flistxattr(int(x.f.Fd()), buf)
	if err != nil {
		return 0, gofs.ToErrno(err)
	}
	var out []byte
	for _, stored := range strings.Split(string(buf[:sz]), "\x00") {
		if !strings.HasPrefix(stored, names.XattrStoredPrefix) {
			continue
		}
		attr, err := n.fs.cfg.Names.DecryptXattrName(stored)
		if err != nil {
			n.fs.log.Warn("skipping an extended attribute whose name does not decrypt", "file", n.plainPath(), "cipher_attr", stored, "err", err)
			continue
		}
		out = append(append(out, attr...), 0)
	}
	if len(dest) < len(out) {
		return uint32(len(out)), syscall.ERANGE
	}
	return uint32(copy(dest, out)), 0
}
