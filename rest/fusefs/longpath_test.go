package fusefs

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// longPathOps builds, below dir, a chain of directories whose path
// (relative to dir) is close to PATH_MAX, through descriptors (the full
// path is longer than the kernel takes as a string once dir is in front),
// then creates, writes, reads, stats, renames and unlinks a file at the
// deepest level. It returns one line per step: what happened.
func longPathOps(t *testing.T, dir string) (out []string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fds := []int{fd}
	t.Cleanup(func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	})
	res := func(step string, err error) { out = append(out, fmt.Sprintf("%s: %v", step, err)) }
	// Directories of 100 bytes (each cipher name below NAME_MAX, no
	// sidecar; the cipher path grows past PATH_MAX), one filler to make
	// the length exact, and a file of NAME_MAX bytes (a long name, with a
	// sidecar): a plaintext path of PATH_MAX-1 bytes, the longest there is.
	const fileLen = unix.NAME_MAX
	budget := unix.PathMax - 1 - fileLen // the directories' part, slashes included
	full, rest := budget/101, budget%101
	if rest == 1 { // a filler needs 2 bytes at least (a name and its slash)
		full, rest = full-1, rest+101
	}
	plain := 0
	for i := 0; plain < budget; i++ {
		name := fmt.Sprintf("%03d-%s", i, strings.Repeat("d", 96))
		if i == full {
			name = strings.Repeat("e", rest-1) // the filler
		}
		if err := unix.Mkdirat(fds[len(fds)-1], name, 0o755); err != nil {
			res("mkdir "+name[:3], err)
			return out, len(fds) - 1
		}
		nfd, err := unix.Openat(fds[len(fds)-1], name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			res("open "+name[:3], err)
			return out, len(fds) - 1
		}
		fds = append(fds, nfd)
		plain += len(name) + 1
	}
	last := fds[len(fds)-1]
	file := strings.Repeat("f", fileLen)
	out = append(out, fmt.Sprintf("depth %d, file path %d bytes", len(fds)-1, plain+len(file)))
	f, err := unix.Openat(last, file, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC, 0o640)
	res("create", err)
	if err == nil {
		n, err := unix.Pwrite(f, []byte("at the bottom"), 0)
		res(fmt.Sprintf("write %d", n), err)
		unix.Close(f)
	}
	f, err = unix.Openat(last, file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	res("open", err)
	if err == nil {
		b := make([]byte, 64)
		n, err := unix.Pread(f, b, 0)
		res(fmt.Sprintf("read %q", b[:max(n, 0)]), err)
		unix.Close(f)
	}
	var st unix.Stat_t
	err = unix.Fstatat(last, file, &st, unix.AT_SYMLINK_NOFOLLOW)
	res(fmt.Sprintf("stat size %d mode %o", st.Size, st.Mode), err)
	buf := make([]byte, 64)
	res("setxattr", unix.Fsetxattr(f2(t, last, file), "user.deep", []byte("v"), 0))
	n, err := unix.Getxattr(procFD(f2(t, last, file)), "user.deep", buf)
	res(fmt.Sprintf("getxattr %q", buf[:max(n, 0)]), err)
	res("symlink", unix.Symlinkat("../target", last, "s"))
	n, err = unix.Readlinkat(last, "s", buf)
	res(fmt.Sprintf("readlink %q", buf[:max(n, 0)]), err)
	names := readNames(t, last)
	slices.Sort(names)
	out = append(out, fmt.Sprintf("list %d entries, first %.5s", len(names), names[0]))
	res("rename", unix.Renameat(last, file, last, "g"))
	res("rename back", unix.Renameat(last, "g", last, file))
	res("mkdir a name of NAME_MAX+1 bytes", unix.Mkdirat(last, file+"x", 0o755))
	res("unlink", unix.Unlinkat(last, file, 0))
	err = unix.Fstatat(last, file, &st, unix.AT_SYMLINK_NOFOLLOW)
	res("stat after unlink", err)
	return out, len(fds) - 1
}

// TestLongPathsMatchPlainDirectory: a plaintext path of PATH_MAX-1 bytes
// works through the mount as in a plain directory, although its cipher
// path is far longer than PATH_MAX (only NAME_MAX applies per component).
func TestLongPathsMatchPlainDirectory(t *testing.T) {
	for _, openat2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("openat2=%v", openat2), func(t *testing.T) {
			w := newWorld(t)
			mnt, _, unmount := w.mountFS(t, func(f *FS) { f.openat2 = f.openat2 && openat2 })
			t.Cleanup(unmount)
			want, depth := longPathOps(t, t.TempDir())
			got, _ := longPathOps(t, mnt)
			if !slices.Equal(got, want) {
				t.Fatalf("through the mount:\n%s\nplain directory:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			t.Logf("%s", strings.Join(got, "\n"))
			if depth < 30 {
				t.Fatalf("chain only %d deep", depth)
			}
			if l := len(cipherDeepest(t, w.cipher)); l <= unix.PathMax {
				t.Fatalf("cipher path of the chain is %d bytes, not beyond PATH_MAX: the test does not test", l)
			}
		})
	}
}

// cipherDeepest is the relative path of the deepest directory below dir
// (following the only subdirectory of each), walked through descriptors.
func cipherDeepest(t *testing.T, dir string) string {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rel []string
	for {
		sub := ""
		ents := readNames(t, fd)
		for _, e := range ents {
			var st unix.Stat_t
			if unix.Fstatat(fd, e, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
				sub = e
			}
		}
		if sub == "" {
			unix.Close(fd)
			return strings.Join(rel, "/")
		}
		nfd, err := unix.Openat(fd, sub, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = nfd
		rel = append(rel, sub)
	}
}

// f2 opens name in dirfd read-only; closed in Cleanup.
func f2(t *testing.T, dirfd int, name string) int {
	t.Helper()
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// procFD names descriptor fd (a path of a few bytes for any depth).
func procFD(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// readNames lists directory fd (without . and ..).
func readNames(t *testing.T, fd int) []string {
	t.Helper()
	dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	var out []string
	buf := make([]byte, 8192)
	for {
		n, err := unix.ReadDirent(dfd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		_, _, out = unix.ParseDirent(buf[:n], -1, out)
	}
}
