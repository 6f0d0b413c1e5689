package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/rest/names"
)

// xattrOps runs the same extended-attribute sequence on a file, a
// directory and a symlink below root (acting on the symlink itself) and
// returns one line per step: the result and the errno.
func xattrOps(t *testing.T, root string) []string {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(root, "file"), []byte("content"), 0o644))
	must(t, os.Mkdir(filepath.Join(root, "dir"), 0o755))
	must(t, os.Symlink("file", filepath.Join(root, "link")))
	var out []string
	res := func(p, step string, n int, err error) {
		out = append(out, fmt.Sprintf("%s %s: %d %v", p, step, n, err))
	}
	long := "user." + strings.Repeat("n", 159)
	for _, p := range []string{"file", "dir", "link"} {
		path := filepath.Join(root, p)
		set := func(step, attr, v string, flags int) { res(p, step, 0, unix.Lsetxattr(path, attr, []byte(v), flags)) }
		get := func(step, attr string, size int) {
			buf := make([]byte, size)
			n, err := unix.Lgetxattr(path, attr, buf)
			if err == nil && size > 0 {
				step += fmt.Sprintf(" %q", buf[:n])
			}
			res(p, step, n, err)
		}
		list := func(step string, size int) {
			buf := make([]byte, size)
			n, err := unix.Llistxattr(path, buf)
			if err == nil && size > 0 {
				l := strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00")
				slices.Sort(l)
				step += fmt.Sprintf(" %q", l)
			}
			res(p, step, n, err)
		}
		get("get absent", "user.a", 64)
		set("replace absent", "user.a", "v1", unix.XATTR_REPLACE)
		set("set", "user.a", "v1", 0)
		set("create existing", "user.a", "v2", unix.XATTR_CREATE)
		set("replace", "user.a", "value two", unix.XATTR_REPLACE)
		get("size query", "user.a", 0)
		get("small buffer", "user.a", 3)
		get("get", "user.a", 64)
		set("empty value", "user.b", "", unix.XATTR_CREATE)
		get("get empty", "user.b", 64)
		set("long name", long, "x", 0)
		get("get long name", long, 64)
		set("binary value", "user.c", "\x00\xff\n", 0)
		get("get binary", "user.c", 64)
		list("list", 1024)
		list("list size query", 0)
		list("list small buffer", 5)
		res(p, "remove", 0, unix.Lremovexattr(path, "user.a"))
		res(p, "remove again", 0, unix.Lremovexattr(path, "user.a"))
		get("get removed", "user.a", 64)
		list("list after remove", 1024)
		get("security absent", "security.selinux", 64)
		set("empty name", "user.", "x", 0)
		get("get empty name", "user.", 64)
		set("name too long", "user."+strings.Repeat("n", 251), "x", 0)
	}
	return out
}

// TestXattrsMatchPlainDirectory: user attributes through the mount
// behave as in a plain directory (flags, size queries, ERANGE, symlinks),
// survive a rename, a hard link and a remount, and the cipher entry shows
// neither their names nor their values.
func TestXattrsMatchPlainDirectory(t *testing.T) {
	w := newWorld(t)
	mnt, stop := mountUntil(t, w)
	want := xattrOps(t, t.TempDir())
	got := xattrOps(t, mnt)
	t.Logf("%s", strings.Join(got, "\n"))
	if !slices.Contains(got, `dir get "value two": 9 <nil>`) {
		t.Errorf("the directory's attribute was not read back")
	}
	if !slices.Equal(got, want) {
		t.Fatalf("through the mount:\n%s\nplain directory:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	must(t, os.Rename(filepath.Join(mnt, "file"), filepath.Join(mnt, "dir", "moved")))
	must(t, os.Link(filepath.Join(mnt, "dir", "moved"), filepath.Join(mnt, "hard")))
	must(t, os.Rename(filepath.Join(mnt, "dir"), filepath.Join(mnt, "dir2")))
	stop()
	mnt, _ = w.mount(t)
	for _, p := range []string{"dir2/moved", "hard", "dir2"} {
		buf := make([]byte, 16)
		n, err := unix.Getxattr(filepath.Join(mnt, p), "user.c", buf)
		if err != nil || string(buf[:n]) != "\x00\xff\n" {
			t.Errorf("%s after rename, link and remount: %q, %v", p, buf[:max(n, 0)], err)
		}
	}
	tr := volumeNames(t, w)
	cp, _, _ := cipherWalk(t, tr, w.cipher, "dir2/moved")
	buf := make([]byte, 4096)
	n, err := unix.Llistxattr(cp, buf)
	must(t, err)
	for _, a := range strings.Split(strings.TrimSuffix(string(buf[:n]), "\x00"), "\x00") {
		if !strings.HasPrefix(a, names.XattrStoredPrefix) || strings.Contains(a, "nnnn") {
			t.Errorf("cipher entry has attribute %q", a)
		}
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(cp, a, v)
		must(t, err)
		if strings.Contains(string(v[:m]), "\x00\xff\n") {
			t.Errorf("cipher attribute %q holds the plaintext value", a)
		}
	}
}

// TestXattrsOutsideUserNamespace: security.* reads as absent and cannot
// be set, system.* (ACLs) and trusted.* are not supported
// (docs/MOUNT.md); nothing is set on the cipher entry.
func TestXattrsOutsideUserNamespace(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	p := filepath.Join(mnt, "f")
	must(t, os.WriteFile(p, nil, 0o644))
	buf := make([]byte, 64)
	for _, tt := range []struct {
		attr          string
		get, set, rem error
	}{
		{"security.selinux", unix.ENODATA, unix.EOPNOTSUPP, unix.EOPNOTSUPP},
		// The kernel parses these two before asking the mount: "x" is
		// refused as malformed.
		{"security.capability", unix.ENODATA, unix.EINVAL, unix.EOPNOTSUPP},
		{"system.posix_acl_access", unix.EOPNOTSUPP, unix.EINVAL, unix.EOPNOTSUPP},
		{"trusted.x", unix.EOPNOTSUPP, unix.EOPNOTSUPP, unix.EOPNOTSUPP},
	} {
		if _, err := unix.Getxattr(p, tt.attr, buf); err != tt.get {
			t.Errorf("getxattr %s: %v, want %v", tt.attr, err, tt.get)
		}
		if err := unix.Setxattr(p, tt.attr, []byte("x"), 0); err != tt.set {
			t.Errorf("setxattr %s: %v, want %v", tt.attr, err, tt.set)
		}
		if err := unix.Removexattr(p, tt.attr); err != tt.rem {
			t.Errorf("removexattr %s: %v, want %v", tt.attr, err, tt.rem)
		}
	}
	cp, _, _ := cipherWalk(t, volumeNames(t, w), w.cipher, "f")
	if n, err := unix.Llistxattr(cp, buf); err != nil || n != 0 {
		t.Errorf("cipher entry has attributes %q, %v", buf[:max(n, 0)], err)
	}
}

// TestXattrTamper: a sealed value copied to another file, to another
// attribute of the same file, or from a file to a directory, reads as
// EIO with a log line, never as the value.
func TestXattrTamper(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	tr := volumeNames(t, w)
	for _, p := range []string{"a", "b"} {
		must(t, os.WriteFile(filepath.Join(mnt, p), nil, 0o644))
	}
	must(t, os.Mkdir(filepath.Join(mnt, "d"), 0o755))
	must(t, unix.Setxattr(filepath.Join(mnt, "a"), "user.secret", []byte("a's secret"), 0))
	must(t, unix.Setxattr(filepath.Join(mnt, "a"), "user.other", []byte("other"), 0))
	must(t, unix.Setxattr(filepath.Join(mnt, "b"), "user.secret", []byte("b's secret"), 0))
	must(t, unix.Setxattr(filepath.Join(mnt, "d"), "user.secret", []byte("d's secret"), 0))
	secret, err := tr.EncryptXattrName("user.secret")
	must(t, err)
	other, err := tr.EncryptXattrName("user.other")
	must(t, err)
	ca, _, _ := cipherWalk(t, tr, w.cipher, "a")
	cb, _, _ := cipherWalk(t, tr, w.cipher, "b")
	cd, _, _ := cipherWalk(t, tr, w.cipher, "d")
	sealed := make([]byte, 4096)
	n, err := unix.Lgetxattr(ca, secret, sealed)
	must(t, err)
	sealed = sealed[:n]
	for _, tt := range []struct{ what, cipher, stored, plain, attr string }{
		{"another file", cb, secret, "b", "user.secret"},
		{"another attribute", ca, other, "a", "user.other"},
		{"a directory", cd, secret, "d", "user.secret"},
	} {
		must(t, unix.Lsetxattr(tt.cipher, tt.stored, sealed, 0))
		before := strings.Count(w.log.String(), "does not authenticate")
		buf := make([]byte, 64)
		n, err := unix.Getxattr(filepath.Join(mnt, tt.plain), tt.attr, buf)
		if err != unix.EIO {
			t.Errorf("value copied to %s: %q, %v; want EIO", tt.what, buf[:max(n, 0)], err)
		}
		if strings.Count(w.log.String(), "does not authenticate") <= before {
			t.Errorf("value copied to %s: no log line:\n%s", tt.what, w.log.String())
		}
	}
}
