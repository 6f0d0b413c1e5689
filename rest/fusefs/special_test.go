package fusefs

// Every file type and the owner of every new entry, through the mount and
// on a plain directory, as root and as another user (issue 12).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/rest/names"
)

// userHelperEnv makes the test binary run userOps in the directory it
// names and exit (TestMain); the parent starts it as another user.
const userHelperEnv = "TENCRYPT_FUSEFS_USER_HELPER"

// otherUID is the unprivileged user of the tests; otherGID a group it is
// not in.
const (
	otherUID = 4242
	otherGID = 4343
)

// describe lists dir's entries (recursively, sorted by path) with what a
// plain directory and the mount must agree on: type, permissions, device
// number, link count, owner and, for a symlink, its target.
func describe(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		s := fmt.Sprintf("%s perm %o rdev %d:%d links %d owner %d:%d", typeName(st.Mode), st.Mode&07777,
			unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Nlink, st.Uid, st.Gid)
		if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s += " -> " + target
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = s
		return nil
	}))
	return out
}

// bounded runs fn, failing the test if it has not returned within opWait
// (a hang bound, not a timing assertion).
func bounded(t *testing.T, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	case <-time.After(opWait):
		t.Fatalf("%s did not return within %v", what, opWait)
	}
}

// fifoPair opens FIFO p for reading (non-blocking, so that a failing
// writer cannot hang the test), then for writing, passes a message
// through it and reads it back to EOF.
func fifoPair(p string) error {
	r, err := unix.Open(p, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open for reading: %w", err)
	}
	defer unix.Close(r)
	w, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open for writing: %w", err)
	}
	_, err = unix.Write(w, []byte("through the pipe"))
	unix.Close(w)
	if err != nil {
		return err
	}
	var got []byte
	buf := make([]byte, 64)
	for {
		n, err := unix.Read(r, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "through the pipe" {
		return fmt.Errorf("read %q from the FIFO, want %q", got, "through the pipe")
	}
	return nil
}

// socketPair binds a listening unix socket at p, connects to it and
// passes a message; the socket file stays (as a server's would).
func socketPair(p string) error {
	l, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(l)
	if err := unix.Bind(l, &unix.SockaddrUnix{Name: p}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := unix.Listen(l, 1); err != nil {
		return err
	}
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: p}); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	a, _, err := unix.Accept(l)
	if err != nil {
		return err
	}
	defer unix.Close(a)
	if _, err := unix.Write(c, []byte("hello")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if n, err := unix.Read(a, buf); err != nil || string(buf[:n]) != "hello" {
		return fmt.Errorf("read %q, %v from the socket, want \"hello\"", buf[:n], err)
	}
	return nil
}

// makeSpecials makes every file type in dir (as root) and uses the FIFO
// and the socket.
func makeSpecials(t *testing.T, dir string) {
	t.Helper()
	in := func(n string) string { return filepath.Join(dir, n) }
	must(t, os.Mkdir(in("sub"), 0o750))
	must(t, unix.Mkfifo(in("p"), 0o640))
	must(t, unix.Mkfifo(in("sub/"+longName), 0o600))
	must(t, unix.Mknod(in("c"), unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(in("b"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
	must(t, unix.Mknod(in("r"), unix.S_IFREG|0o604, 0))
	must(t, os.Link(in("p"), in("p.link")))
	must(t, os.Rename(in("c"), in("sub/c2")))
	must(t, os.Chmod(in("b"), 0o640))
	if err := unix.Mkfifo(in("p"), 0o600); !errors.Is(err, syscall.EEXIST) {
		t.Errorf("mkfifo over an existing FIFO in %s: %v, want EEXIST", dir, err)
	}
	bounded(t, "a FIFO's writer and reader in "+dir, func() error { return fifoPair(in("p.link")) })
	// A socket address holds 107 bytes: bind by a path relative to dir.
	wd, err := os.Getwd()
	must(t, err)
	must(t, os.Chdir(dir))
	defer os.Chdir(wd)
	bounded(t, "a unix socket bound in "+dir, func() error { return socketPair("s") })
}

func TestSpecialFilesMatchPlainDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	w := newWorld(t)
	mnt, unmountOnce := w.mountOnce(t)
	unmount := sync.OnceFunc(unmountOnce)
	t.Cleanup(unmount)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the mount logged:\n%s", w.log.String())
		}
	})
	plain := t.TempDir()
	makeSpecials(t, plain)
	makeSpecials(t, mnt)
	want, got := describe(t, plain), describe(t, mnt)
	if len(want) != 8 {
		t.Fatalf("the plain directory holds %d entries, want 8: %v", len(want), want)
	}
	compareDescriptions(t, want, got)
	// A device node in the mount is not usable (nodev, as gocryptfs by
	// default); on a plain directory it is the device (1:3, /dev/null).
	if f, err := os.OpenFile(filepath.Join(plain, "sub/c2"), os.O_WRONLY, 0); err != nil {
		t.Errorf("open of a character device on the plain directory: %v", err)
	} else {
		f.Close()
	}
	if f, err := os.OpenFile(filepath.Join(mnt, "sub/c2"), os.O_WRONLY, 0); !errors.Is(err, syscall.EACCES) {
		if err == nil {
			f.Close()
		}
		t.Errorf("open of a character device through the mount: %v, want EACCES (nodev)", err)
	}
	unmount()
	// The markers persist: a new mount shows the same entries.
	mnt2, _ := w.mount(t)
	compareDescriptions(t, want, describe(t, mnt2))
	bounded(t, "the FIFO after a remount", func() error { return fifoPair(filepath.Join(mnt2, "p")) })
	// Renames over special files: a FIFO over a block device (its marker
	// replaces the device's), a regular file over a socket (the socket's
	// marker goes).
	in := func(n string) string { return filepath.Join(mnt2, n) }
	must(t, os.Rename(in("p.link"), in("b")))
	must(t, os.Rename(in("r"), in("s")))
	var st syscall.Stat_t
	if err := syscall.Lstat(in("b"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO || st.Nlink != 2 {
		t.Errorf("b after a FIFO was renamed over it: mode %o links %d, %v; want a FIFO with 2 links", st.Mode, st.Nlink, err)
	}
	if err := syscall.Lstat(in("s"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		t.Errorf("s after a file was renamed over it: mode %o, %v; want a regular file", st.Mode, err)
	}
	bounded(t, "a FIFO renamed over a device", func() error { return fifoPair(in("b")) })
	// One marker per special name left: p, b, sub/c2 and the long one.
	if m := leftMarkers(t, w.cipher); len(m) != 4 {
		t.Errorf("after the renames the cipher directory holds %d markers, want 4: %v", len(m), m)
	}
	// Unlink and rename leave no marker behind.
	for _, n := range []string{"p", "b", "s", "sub/c2", "sub/" + longName} {
		must(t, os.Remove(filepath.Join(mnt2, n)))
	}
	must(t, os.Remove(filepath.Join(mnt2, "sub")))
	if left := leftMarkers(t, w.cipher); len(left) > 0 {
		t.Errorf("markers left in the cipher directory after removing every special file: %v", left)
	}
}

// compareDescriptions fails for every entry that differs; the mount's
// device numbers and owners must be those of the plain directory.
func compareDescriptions(t *testing.T, want, got map[string]string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	for k := range keys {
		if want[k] != got[k] {
			t.Errorf("%s: mount %q, plain directory %q", k, got[k], want[k])
		}
	}
}

// leftMarkers lists the special-node markers and temporary files under
// the cipher directory.
func leftMarkers(t *testing.T, cipher string) []string {
	t.Helper()
	var out []string
	must(t, filepath.WalkDir(cipher, func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasPrefix(d.Name(), markerPrefix) || strings.HasPrefix(d.Name(), names.TempPrefix)) {
			out = append(out, p)
		}
		return err
	}))
	return out
}

// userOps makes every file type in dir as the (unprivileged) user it runs
// as, and prints each call's result as JSON: "OK" or the errno's name.
func userOps(dir string) error {
	if err := os.Chdir(dir); err != nil {
		return err
	}
	res := map[string]string{}
	do := func(op string, err error) {
		res[op] = "OK"
		var errno syscall.Errno
		if errors.As(err, &errno) {
			res[op] = unix.ErrnoName(errno)
		} else if err != nil {
			res[op] = err.Error()
		}
	}
	do("mkdir", os.Mkdir("d", 0o755))
	do("mkdir in own directory", os.Mkdir("d/sub", 0o700))
	do("symlink", os.Symlink("some/target", "l"))
	do("mkfifo", unix.Mkfifo("p", 0o644))
	do("create", os.WriteFile("f", []byte("mine"), 0o644))
	do("link", os.Link("f", "d/f2"))
	do("bind", socketPair("s"))
	do("mknod char device", unix.Mknod("c", unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))))
	do("chown to root", os.Lchown("f", 0, 0))
	do("fifo pair", fifoPair("p"))
	// In sg, a setgid directory of another group (made by the parent):
	// new entries take its group, a new directory its setgid bit.
	do("create in setgid directory", os.WriteFile("sg/f", nil, 0o644))
	do("mkdir in setgid directory", os.Mkdir("sg/d", 0o755))
	do("mkfifo in setgid directory", unix.Mkfifo("sg/p", 0o644))
	do("symlink in setgid directory", os.Symlink("t", "sg/l"))
	fd, err := unix.Open("suid", unix.O_CREAT|unix.O_WRONLY|unix.O_EXCL|unix.O_CLOEXEC, 0o4755)
	if err == nil {
		unix.Close(fd)
	}
	do("create setuid file", err)
	xattrUserOps(do)
	return json.NewEncoder(os.Stdout).Encode(res)
}

// xattrUserOps are userOps' extended-attribute calls: on the caller's own
// file, and on root's file rootf (readable, not writable by the caller).
func xattrUserOps(do func(op string, err error)) {
	buf := make([]byte, 64)
	do("setxattr on own file", unix.Setxattr("f", "user.mine", []byte("v"), 0))
	_, err := unix.Getxattr("f", "user.mine", buf)
	do("getxattr on own file", err)
	_, err = unix.Getxattr("rootf", "user.root", buf)
	do("getxattr on root's file", err)
	_, err = unix.Listxattr("rootf", buf)
	do("listxattr on root's file", err)
	do("setxattr on root's file", unix.Setxattr("rootf", "user.root", []byte("x"), 0))
	do("removexattr on root's file", unix.Removexattr("rootf", "user.root"))
}

// runAsUser runs userOps in dir as otherUID, with the test binary copied
// to exe (the build directory is private to root).
func runAsUser(t *testing.T, exe, dir string) map[string]string {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), userHelperEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: otherUID, Gid: otherUID}}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the helper as user %d in %s: %v: %s", otherUID, dir, err, stderr.String())
		}
	case <-time.After(opWait):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the helper as user %d in %s did not return within %v (killed)", otherUID, dir, opWait)
	}
	res := map[string]string{}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("helper output %q: %v", out.String(), err)
	}
	return res
}

// TestOtherUserMatchesPlainDirectory: a user other than root makes every
// file type through a mount with allow_other, whose cipher root is mode
// 0777 (volume init --root-mode), and gets what it gets on a plain directory:
// the same results and errnos, and every new entry owned by it.
func TestOtherUserMatchesPlainDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	base, err := os.MkdirTemp("", "tencrypt-posix-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	must(t, os.Chmod(base, 0o755))
	exe := filepath.Join(base, "fusefs.test")
	b, err := os.ReadFile(os.Args[0])
	must(t, err)
	must(t, os.WriteFile(exe, b, 0o755))
	plain, mnt := filepath.Join(base, "plain"), filepath.Join(base, "mnt")
	must(t, os.Mkdir(plain, 0o777))
	must(t, os.Chmod(plain, 0o777))
	must(t, os.Mkdir(mnt, 0o755))

	w := newWorld(t)
	must(t, os.Chmod(w.cipher, 0o777))
	_, _, unmountOnce := w.mountAt(t, mnt, MountOptions{AllowOther: true})
	unmount := sync.OnceFunc(unmountOnce)
	t.Cleanup(unmount)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the mount logged:\n%s", w.log.String())
		}
	})

	for _, d := range []string{plain, mnt} {
		sg := filepath.Join(d, "sg")
		must(t, os.Mkdir(sg, 0o777))
		must(t, os.Chown(sg, 0, otherGID))
		must(t, os.Chmod(sg, 0o777|os.ModeSetgid))
		// root's file, with an attribute, for xattrUserOps.
		must(t, os.WriteFile(filepath.Join(d, "rootf"), nil, 0o644))
		must(t, unix.Setxattr(filepath.Join(d, "rootf"), "user.root", []byte("r"), 0))
	}
	wantRes, gotRes := runAsUser(t, exe, plain), runAsUser(t, exe, mnt)
	if len(wantRes) != 21 || wantRes["mkdir"] != "OK" || wantRes["mknod char device"] != "EPERM" || wantRes["setxattr on root's file"] != "EACCES" {
		t.Fatalf("on the plain directory: %v; want 21 results, mkdir OK, mknod EPERM, setxattr on root's file EACCES", wantRes)
	}
	for _, k := range slices.Sorted(maps.Keys(wantRes)) {
		if wantRes[k] != gotRes[k] {
			t.Errorf("%s: %s through the mount, %s on the plain directory", k, gotRes[k], wantRes[k])
		}
	}
	want, got := describe(t, plain), describe(t, mnt)
	compareDescriptions(t, want, got)
	for _, p := range []string{"d", "d/sub", "l", "p", "f", "d/f2", "s"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(mnt, p), &st); err != nil {
			t.Errorf("%s: %v", p, err)
		} else if st.Uid != otherUID || st.Gid != otherUID {
			t.Errorf("%s through the mount: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, otherUID, otherUID)
		}
	}
}

// TestFreshNode: after mknodat the mount reopens the new node by name and
// must refuse any inode but the one it just made before changing its mode
// or owner (a hard link to a node elsewhere, a node of another owner,
// type or device, one that already has permission bits).
func TestFreshNode(t *testing.T) {
	me := uint32(os.Geteuid())
	chr := uint32(syscall.S_IFCHR | 0o644)
	good := syscall.Stat_t{Mode: syscall.S_IFCHR, Nlink: 1, Uid: me, Rdev: 0x103}
	tests := []struct {
		name string
		edit func(*syscall.Stat_t)
		ok   bool
	}{
		{"the node just made", func(*syscall.Stat_t) {}, true},
		{"a second link (hard link to a node elsewhere)", func(s *syscall.Stat_t) { s.Nlink = 2 }, false},
		{"another owner", func(s *syscall.Stat_t) { s.Uid = me + 1 }, false},
		{"permission bits already set", func(s *syscall.Stat_t) { s.Mode |= 0o600 }, false},
		{"another device number", func(s *syscall.Stat_t) { s.Rdev = 0x101 }, false},
		{"another type", func(s *syscall.Stat_t) { s.Mode = syscall.S_IFIFO }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := good
			tt.edit(&st)
			err := freshNode("d/x", &st, chr, 0x103)
			if (err == nil) != tt.ok {
				t.Fatalf("freshNode = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
