package fusefs

// The hostile-storage suite (issue 16): whoever can write the cipher
// directory plants symlinks, FIFOs, devices, sockets and hard links in it,
// or breaks IV files, before or while the volume is mounted; the mount
// (root) must refuse each with EIO or ENOENT and a log line, change
// nothing outside the cipher directory, and never hang.
//
// The file-system calls run in a child process (the test binary again,
// opsHelperEnv), one result line per call, each awaited at most opWait: a
// call that blocks in the kernel (uninterruptible, as a FIFO read by the
// server would make it) fails the test with the call's name, and the FUSE
// connection is aborted so that nothing stays wedged.
//
// To add an attack, add a row to hostileCases: plant changes the cipher
// directory (h.cipher maps a plaintext path to its cipher path) and returns
// a string the mount's log must contain afterwards; ops are the calls made
// through the mount.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/rest/names"
)

// opsHelperEnv makes the test binary run the file-system calls of the
// JSON opsRequest it holds and exit (TestMain).
const opsHelperEnv = "TENCRYPT_FUSEFS_OPS_HELPER"

// opWait bounds every call of the suite: far above any real latency, it
// only turns a hang into a failure (no timing is asserted).
const opWait = 30 * time.Second

// hop is one call through the mount: Op on Path (relative to the mount,
// or to Chdir when the request has one). OK: success is acceptable too,
// because the call acts only on the cipher entry (unlinking or renaming a
// planted entry, listing its directory); the canaries prove it reached
// nothing else.
type hop struct {
	Op   string `json:"op"`
	Path string `json:"path"`
	Arg  string `json:"arg,omitempty"`
	OK   bool   `json:"ok,omitempty"`
}

// opsRequest is what the child process does: chdir to Root (the mount), stat Warm (so the kernel
// caches those entries), chdir to Chdir, print "ready", wait for a line on
// stdin (the parent plants meanwhile), then run Ops, printing one line per
// call: its index and "OK" or the errno's name.
type opsRequest struct {
	Root  string   `json:"root"`
	Chdir string   `json:"chdir,omitempty"`
	Warm  []string `json:"warm,omitempty"`
	Ops   []hop    `json:"ops"`
}

// hostile is one row's world: a volume with the standard tree (a file
// d/f, a directory d/sub holding g, a long-named file d/<longName>), the
// canaries outside the cipher directory, and the mount.
type hostile struct {
	w          *world
	canaryFile string // 16 bytes, as long as an IV, so a followed link would "work"
	canaryDir  string
	fifos      []string // planted FIFOs, opened for writing on a hang to release readers
}

var longName = strings.Repeat("L", 200)

// cipher returns the cipher path of plaintext path plain (relative to the
// mount), computed from the cipher directory's IV files
// (names_binding_test.go).
func (h *hostile) cipher(t *testing.T, plain string) string {
	t.Helper()
	p, _, _ := cipherWalk(t, volumeNames(t, h.w), h.w.cipher, plain)
	return p
}

// hostileCase is one attack. live: plant while mounted, after the child
// process has looked up warm and moved into chdir (the inode is cached in
// the kernel and in the mount); otherwise plant before mounting.
type hostileCase struct {
	name  string
	plant func(t *testing.T, h *hostile) (logWant string)
	live  bool
	chdir string
	warm  []string
	ops   []hop
	// wrongType: the plant puts an entry of a type the mount never makes
	// there, which Stats.Refused must count.
	wrongType bool
	// allow lists errnos accepted besides EIO and ENOENT.
	allow []string
}

// fileOps are the calls on a plaintext file p whose cipher entry was
// replaced; the listing of its directory, renaming and unlinking it may
// succeed (they touch only the cipher entry).
func fileOps(p string, except ...string) []hop {
	all := []hop{
		{Op: "ls", Path: filepath.Dir(p), OK: true},
		{Op: "stat", Path: p}, {Op: "read", Path: p}, {Op: "write", Path: p},
		{Op: "chmod", Path: p}, {Op: "chown", Path: p}, {Op: "truncate", Path: p},
		{Op: "utimes", Path: p}, {Op: "readlink", Path: p},
		{Op: "getxattr", Path: p}, {Op: "setxattr", Path: p}, {Op: "listxattr", Path: p},
		{Op: "rename", Path: p, Arg: p + "-renamed", OK: true},
		{Op: "unlink", Path: p, OK: true},
	}
	return slices.DeleteFunc(all, func(o hop) bool { return slices.Contains(except, o.Op) })
}

// dirOps are the calls in and on a plaintext directory p whose cipher
// directory was replaced (it held the file g).
func dirOps(p string) []hop {
	in := func(n string) string { return filepath.Join(p, n) }
	return []hop{
		{Op: "ls", Path: p}, {Op: "stat", Path: in("g")}, {Op: "read", Path: in("g")},
		{Op: "write", Path: in("g")}, {Op: "chmod", Path: in("g")}, {Op: "chown", Path: in("g")},
		{Op: "truncate", Path: in("g")}, {Op: "utimes", Path: in("g")},
		{Op: "getxattr", Path: in("g")}, {Op: "setxattr", Path: in("g")}, {Op: "listxattr", Path: in("g")},
		{Op: "create", Path: in("new")}, {Op: "mkdir", Path: in("newdir")},
		{Op: "symlink", Path: in("sl")},
		{Op: "rename", Path: in("g"), Arg: in("g2")}, {Op: "unlink", Path: in("g")},
	}
}

// dirSelfOps are the calls on directory p itself (cwd "." when inside).
func dirSelfOps(p string) []hop {
	return []hop{{Op: "stat", Path: p}, {Op: "chmod", Path: p}, {Op: "chown", Path: p}, {Op: "utimes", Path: p},
		{Op: "getxattr", Path: p}, {Op: "setxattr", Path: p}, {Op: "listxattr", Path: p}}
}

func hostileCases() []hostileCase {
	symlinkTo := func(plain string, target func(h *hostile) string) func(t *testing.T, h *hostile) string {
		return func(t *testing.T, h *hostile) string {
			cp := h.cipher(t, plain)
			must(t, os.Rename(cp, cp+".away"))
			must(t, os.Symlink(target(h), cp))
			return filepath.Base(cp)
		}
	}
	canaryFile := func(h *hostile) string { return h.canaryFile }
	canaryDir := func(h *hostile) string { return h.canaryDir }
	special := func(plain string, mk func(t *testing.T, h *hostile, cp string)) func(t *testing.T, h *hostile) string {
		return func(t *testing.T, h *hostile) string {
			cp := h.cipher(t, plain)
			must(t, os.Rename(cp, cp+".away"))
			mk(t, h, cp)
			return filepath.Base(cp)
		}
	}
	fifo := func(t *testing.T, h *hostile, cp string) {
		must(t, unix.Mkfifo(cp, 0o644))
		h.fifos = append(h.fifos, cp)
	}
	chardev := func(t *testing.T, h *hostile, cp string) {
		must(t, unix.Mknod(cp, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3)))) // /dev/null's numbers
	}
	socket := func(t *testing.T, h *hostile, cp string) { plantSocket(t, cp) }
	// In the directory d/sub (its IV file, named by the directory).
	inIV := func(mk func(t *testing.T, h *hostile, cp string)) func(t *testing.T, h *hostile) string {
		return func(t *testing.T, h *hostile) string {
			dir := h.cipher(t, "d/sub")
			cp := filepath.Join(dir, names.DirIVFile)
			must(t, os.Remove(cp))
			mk(t, h, cp)
			return filepath.Base(dir)
		}
	}
	ivSymlink := func(t *testing.T, h *hostile, cp string) { must(t, os.Symlink(h.canaryFile, cp)) }
	sidecar := func(mk func(t *testing.T, h *hostile, cp string)) func(t *testing.T, h *hostile) string {
		return func(t *testing.T, h *hostile) string {
			cp := h.cipher(t, "d/"+longName) + names.LongNameSuffix
			must(t, os.Remove(cp))
			mk(t, h, cp)
			return filepath.Base(cp)
		}
	}
	subContent := []hop{
		{Op: "ls", Path: "d/sub"}, {Op: "stat", Path: "d/sub/g"}, {Op: "read", Path: "d/sub/g"},
		{Op: "chmod", Path: "d/sub/g"}, {Op: "create", Path: "d/sub/new"}, {Op: "mkdir", Path: "d/sub/newdir"},
		{Op: "symlink", Path: "d/sub/sl"}, {Op: "rename", Path: "d/sub/g", Arg: "d/sub/g2"},
		{Op: "unlink", Path: "d/sub/g"}, {Op: "stat", Path: "d/sub", OK: true},
	}
	longOps := fileOps("d/"+longName, "readlink")
	return []hostileCase{
		{wrongType: true, name: "symlink in place of a file", plant: symlinkTo("d/f", canaryFile), ops: fileOps("d/f")},
		{wrongType: true, name: "symlink in place of a file, inode cached", plant: symlinkTo("d/f", canaryFile), live: true, warm: []string{"d/f"},
			ops: fileOps("d/f", "readlink")},
		{wrongType: true, name: "symlink in place of a directory", plant: symlinkTo("d/sub", canaryDir),
			ops: append(dirOps("d/sub"), dirSelfOps("d/sub")...)},
		{wrongType: true, name: "symlink in place of a directory, process inside", plant: symlinkTo("d/sub", canaryDir), live: true, chdir: "d/sub",
			warm: []string{"d/sub/g"}, ops: append(dirOps("."), dirSelfOps(".")...)},
		{wrongType: true, name: "symlink in place of the IV file", plant: inIV(ivSymlink), ops: subContent},
		{wrongType: true, name: "symlink in place of a sidecar", plant: sidecar(ivSymlink), ops: longOps},
		{wrongType: true, name: "FIFO in place of a file", plant: special("d/f", fifo), ops: fileOps("d/f")},
		{wrongType: true, name: "FIFO in place of a file, inode cached", plant: special("d/f", fifo), live: true, warm: []string{"d/f"},
			ops: fileOps("d/f", "readlink")},
		{wrongType: true, name: "FIFO in place of the IV file", plant: inIV(fifo), ops: subContent},
		{wrongType: true, name: "FIFO in place of a sidecar", plant: sidecar(fifo), ops: longOps},
		{wrongType: true, name: "character device in place of a file", plant: special("d/f", chardev), ops: fileOps("d/f")},
		{wrongType: true, name: "character device in place of a file, inode cached", plant: special("d/f", chardev), live: true, warm: []string{"d/f"},
			ops: fileOps("d/f", "readlink")},
		{wrongType: true, name: "character device in place of the IV file", plant: inIV(chardev), ops: subContent},
		{wrongType: true, name: "character device in place of a sidecar", plant: sidecar(chardev), ops: longOps},
		{wrongType: true, name: "socket in place of a file", plant: special("d/f", socket), ops: fileOps("d/f")},
		{wrongType: true, name: "socket in place of the IV file", plant: inIV(socket), ops: subContent},
		{wrongType: true, name: "socket in place of a sidecar", plant: sidecar(socket), ops: longOps},
		{wrongType: true, name: "device in place of a FIFO made through the mount", plant: func(t *testing.T, h *hostile) string {
			cp := h.mountFIFO(t, "d/p")
			must(t, os.Remove(cp))
			chardev(t, h, cp) // the FIFO's marker stays: it names a FIFO
			return filepath.Base(cp)
		}, ops: append(fileOps("d/p", "readlink", "truncate"), hop{Op: "link", Path: "d/p", Arg: "d/p2"})},
		{wrongType: true, name: "FIFO in place of a file, with a marker copied from a FIFO made through the mount", plant: func(t *testing.T, h *hostile) string {
			pp := h.mountFIFO(t, "d/p")
			cp := h.cipher(t, "d/f")
			must(t, os.Rename(cp, cp+".away"))
			fifo(t, h, cp)
			b, err := os.ReadFile(filepath.Join(filepath.Dir(pp), markerName(filepath.Base(pp))))
			must(t, err)
			must(t, os.WriteFile(filepath.Join(filepath.Dir(cp), markerName(filepath.Base(cp))), b, 0o400))
			return filepath.Base(cp)
		}, ops: fileOps("d/f")},
		{name: "symlink in place of a FIFO made through the mount, its target that FIFO's marker", plant: func(t *testing.T, h *hostile) string {
			// A marker is sealed for its place as a symlink target is; a
			// target with a NUL in it is a marker, never a link.
			pp := h.mountFIFO(t, "d/p")
			b, err := os.ReadFile(filepath.Join(filepath.Dir(pp), markerName(filepath.Base(pp))))
			must(t, err)
			must(t, os.Remove(pp))
			must(t, os.Symlink(string(b), pp))
			return filepath.Base(pp)
		}, ops: []hop{{Op: "readlink", Path: "d/p"}}},
		{name: "IV file deleted", plant: inIV(func(*testing.T, *hostile, string) {}), ops: subContent},
		{name: "IV file truncated", plant: inIV(func(t *testing.T, h *hostile, cp string) {
			must(t, os.WriteFile(cp, []byte("short"), 0o400))
		}), ops: subContent},
		{wrongType: true, name: "symlinks planted at the names new entries will get", plant: func(t *testing.T, h *hostile) string {
			// Names are deterministic per directory: whoever saw them once
			// can plant a link there before the entry is created again.
			for _, p := range []string{"d/new", "d/newdir", "d/sl"} {
				must(t, os.Symlink(h.canaryDir, h.cipher(t, p)))
			}
			return filepath.Base(h.cipher(t, "d/new"))
		}, allow: []string{"EEXIST"}, ops: []hop{
			{Op: "create", Path: "d/new"}, {Op: "mkdir", Path: "d/newdir"}, {Op: "symlink", Path: "d/sl"},
			{Op: "stat", Path: "d/new"}, {Op: "ls", Path: "d/newdir"}, {Op: "ls", Path: "d", OK: true},
			{Op: "rename", Path: "d/f", Arg: "d/newdir", OK: true}, {Op: "unlink", Path: "d/new", OK: true},
		}},
		{name: "hard link to a file outside the cipher directory", plant: func(t *testing.T, h *hostile) string {
			cp := h.cipher(t, "d/f")
			must(t, os.Remove(cp))
			must(t, os.Link(h.canaryFile, cp))
			return "file=/d/f"
		}, ops: func() []hop {
			ops := fileOps("d/f", "readlink")
			for i := range ops {
				if ops[i].Op == "stat" { // a stat reads nothing and changes nothing
					ops[i].OK = true
				}
			}
			return ops
		}()},
		{name: "hard link to a file outside the cipher directory, inode cached", plant: func(t *testing.T, h *hostile) string {
			cp := h.cipher(t, "d/f")
			must(t, os.Remove(cp))
			must(t, os.Link(h.canaryFile, cp))
			return "file=/d/f"
		}, live: true, warm: []string{"d/f"}, ops: func() []hop {
			ops := fileOps("d/f", "readlink")
			for i := range ops {
				if ops[i].Op == "stat" {
					ops[i].OK = true
				}
			}
			return ops
		}()},
	}
}

// mountFIFO makes FIFO plain through the mount (mounted for the call) and
// returns its cipher path.
func (h *hostile) mountFIFO(t *testing.T, plain string) string {
	t.Helper()
	mnt, unmount := h.w.mountOnce(t)
	err := unix.Mkfifo(filepath.Join(mnt, plain), 0o644)
	unmount()
	must(t, err)
	return h.cipher(t, plain)
}

// plantSocket binds a unix socket at cp (through its directory's
// /proc/self/fd link: a cipher path may exceed a socket address's 108
// bytes) and closes it; the socket file stays.
func plantSocket(t *testing.T, cp string) {
	t.Helper()
	dfd, err := unix.Open(filepath.Dir(cp), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(dfd)
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(s)
	must(t, unix.Bind(s, &unix.SockaddrUnix{Name: procPath(dfd) + "/" + filepath.Base(cp)}))
}

func TestHostileCipherDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	if !probeOpenat2(t) {
		t.Fatal("this kernel has no openat2 (Linux 5.6): the suite needs it to test both ways of resolving paths")
	}
	for _, resolve := range []string{"openat2", "walk"} {
		t.Run(resolve, func(t *testing.T) {
			for _, tt := range append(hostileCases(), namesHostileCases()...) {
				t.Run(tt.name, func(t *testing.T) { runHostile(t, tt, resolve == "openat2") })
			}
		})
	}
}

// probeOpenat2 reports whether the mount resolves with openat2 here.
func probeOpenat2(t *testing.T) bool {
	fd, ok, err := openRoot(t.TempDir())
	must(t, err)
	unix.Close(fd)
	return ok
}

// TestHostileRootIV: a volume whose root IV file is not a regular file
// sealed for the root does not mount (names.ErrBadDirIV, exit code 10 in the CLI), and
// never blocks.
func TestHostileRootIV(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, cp, canary string)
	}{
		{"symlink to a 16-byte host file", func(t *testing.T, cp, canary string) { must(t, os.Symlink(canary, cp)) }},
		{"FIFO", func(t *testing.T, cp, _ string) { must(t, unix.Mkfifo(cp, 0o644)) }},
		{"character device", func(t *testing.T, cp, _ string) {
			must(t, unix.Mknod(cp, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 5)))) // /dev/zero's numbers
		}},
		{"socket", func(t *testing.T, cp, _ string) { plantSocket(t, cp) }},
		{"directory", func(t *testing.T, cp, _ string) { must(t, os.Mkdir(cp, 0o700)) }},
		{"missing", func(*testing.T, string, string) {}},
		{"too long", func(t *testing.T, cp, _ string) { must(t, os.WriteFile(cp, make([]byte, 17), 0o400)) }},
		{"16 random bytes (format 1)", func(t *testing.T, cp, _ string) { must(t, os.WriteFile(cp, []byte("0123456789abcdef"), 0o400)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			canary := filepath.Join(t.TempDir(), "canary")
			must(t, os.WriteFile(canary, []byte("canary-16-bytes!"), 0o600))
			cp := filepath.Join(w.cipher, names.DirIVFile)
			must(t, os.Remove(cp))
			tt.plant(t, cp, canary)
			v, err := names.LoadVolume(w.cipher)
			must(t, err)
			tr, err := v.Transform(context.Background(), w.env, "fusefs test")
			must(t, err)
			done := make(chan error, 1)
			go func() {
				f, err := New(Config{CipherDir: w.cipher, Tenant: "blue", Envelope: w.env, Names: tr, Log: slog.New(slog.NewTextHandler(w.log, nil))})
				if err == nil {
					f.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, names.ErrBadDirIV) {
					t.Errorf("New: %v, want names.ErrBadDirIV", err)
				}
			case <-time.After(opWait):
				t.Errorf("New did not return within %v: reading the root IV blocked", opWait)
				if fd, err := unix.Open(cp, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
					unix.Close(fd) // releases a reader blocked on a FIFO
				}
			}
		})
	}
}

// runHostile runs one row: build the tree, plant (before mounting, or
// live), run the calls in a child process, then check the results, the
// canaries and the log.
func runHostile(t *testing.T, tt hostileCase, openat2 bool) {
	h := &hostile{w: newWorld(t)}
	outside := t.TempDir()
	h.canaryFile, h.canaryDir = filepath.Join(outside, "canary"), filepath.Join(outside, "canarydir")
	must(t, os.WriteFile(h.canaryFile, []byte("canary-16-bytes!"), 0o600))
	must(t, os.Mkdir(h.canaryDir, 0o750))
	must(t, os.WriteFile(filepath.Join(h.canaryDir, "keep"), []byte("keep"), 0o600))
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	must(t, os.Chtimes(h.canaryFile, old, old))
	must(t, os.Chtimes(h.canaryDir, old, old))
	before := canaries(t, outside)

	mnt, unmount := h.w.mountOnce(t)
	must(t, os.MkdirAll(filepath.Join(mnt, "d", "sub"), 0o755))
	for _, f := range []string{"d/f", "d/sub/g", "d/" + longName} {
		must(t, os.WriteFile(filepath.Join(mnt, f), []byte("secret "+f), 0o644))
	}
	unmount()

	var logWant string
	if !tt.live {
		logWant = tt.plant(t, h)
	}
	mnt, f, unmount := h.w.mountFS(t, func(f *FS) { f.openat2 = f.openat2 && openat2 })
	dev := mountDev(t, mnt)
	hung := false
	t.Cleanup(func() { h.unmount(t, mnt, dev, unmount, hung) })

	req := opsRequest{Warm: tt.warm, Ops: tt.ops}
	if tt.chdir != "" {
		req.Chdir = filepath.Join(mnt, tt.chdir)
	}
	plant := func() {}
	if tt.live {
		plant = func() { logWant = tt.plant(t, h) }
	}
	if tt.live {
		// The kernel answers a stat of a cached inode from its attribute
		// cache (1 s) without asking the mount: harmless, and allowed.
		tt.ops = slices.Clone(tt.ops)
		for i := range tt.ops {
			if tt.ops[i].Op == "stat" {
				tt.ops[i].OK = true
			}
		}
	}
	results, ok := runOps(t, mnt, req, plant, func() { hung = true; h.abort(t, dev) })
	for i, o := range tt.ops {
		if i >= len(results) {
			break
		}
		got := results[i]
		if got == "EIO" || got == "ENOENT" || (o.OK && got == "OK") || slices.Contains(tt.allow, got) {
			continue
		}
		t.Errorf("%s %s: %s, want EIO or ENOENT", o.Op, o.Path, got)
	}
	if !ok {
		return
	}
	if after := canaries(t, outside); !sameMap(before, after) {
		t.Errorf("something outside the cipher directory changed:\nbefore %v\nafter  %v", before, after)
	}
	if log := h.w.log.String(); !strings.Contains(log, logWant) {
		t.Errorf("no log line names %q; the mount logged:\n%s", logWant, log)
	}
	if tt.wrongType && f.Stats().Refused.Load() == 0 {
		t.Error("an entry of the wrong type was not counted in Stats.Refused")
	}
}

// canaries describes every entry under dir: type, mode, owner, size,
// mtime and content.
func canaries(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		s := fmt.Sprintf("mode %o uid %d gid %d size %d mtime %d.%09d", st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" content %q", b)
		}
		out[p] = s
		return nil
	}))
	return out
}

func sameMap(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func mountDev(t *testing.T, mnt string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Stat(mnt, &st))
	return st.Dev
}

// runOps runs req in a child process with the mount at mnt; plant runs
// once the child is ready. It returns one result per call that answered,
// and false if a call hung (then onHang has run).
func runOps(t *testing.T, mnt string, req opsRequest, plant, onHang func()) ([]string, bool) {
	t.Helper()
	// Not cmd.Dir = mnt: the fork's child would enter the mount before
	// exec, while this process (its server) is stopped for the fork.
	req.Root = mnt
	b, err := json.Marshal(req)
	must(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), opsHelperEnv+"="+string(b))
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	lines := make(chan string, len(req.Ops)+2)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(what string) (string, bool) {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Errorf("the helper exited before %s: %v\n%s", what, <-done, stderr.String())
			}
			return l, ok
		case <-time.After(opWait):
			t.Errorf("%s did not return within %v: the mount hung", what, opWait)
			cmd.Process.Kill()
			onHang()
			select {
			case <-done:
			case <-time.After(opWait):
				t.Errorf("the helper process did not exit after SIGKILL and the FUSE connection's abort")
			}
			return "", false
		}
	}
	if l, ok := next("the lookups before planting"); !ok || l != "ready" {
		return nil, false
	}
	plant()
	fmt.Fprintln(stdin, "go")
	var results []string
	for _, o := range req.Ops {
		l, ok := next(fmt.Sprintf("%s %s", o.Op, o.Path))
		if !ok {
			return results, false
		}
		results = append(results, strings.TrimPrefix(l, fmt.Sprint(len(results), " ")))
	}
	if err := <-done; err != nil {
		t.Errorf("helper: %v\n%s", err, stderr.String())
	}
	return results, true
}

// abort releases whatever a hang left blocked: the FUSE connection is
// aborted (every waiting request fails), and a FIFO a server thread may be
// blocked on is opened for writing and closed.
func (h *hostile) abort(t *testing.T, dev uint64) {
	t.Helper()
	conns := "/sys/fs/fuse/connections"
	abortFile := filepath.Join(conns, fmt.Sprint(unix.Minor(dev)), "abort")
	if _, err := os.Stat(abortFile); err != nil {
		if err := unix.Mount("fusectl", conns, "fusectl", 0, ""); err != nil {
			t.Errorf("mount fusectl to abort the hung connection: %v", err)
		}
	}
	if err := os.WriteFile(abortFile, []byte("1"), 0o200); err != nil {
		t.Errorf("abort the hung FUSE connection: %v", err)
	}
	for _, p := range h.fifos {
		if fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0); err == nil {
			unix.Write(fd, make([]byte, names.DirIVFileSize))
			unix.Close(fd)
		}
	}
}

// unmount unmounts, bounded: after a hang it detaches lazily.
func (h *hostile) unmount(t *testing.T, mnt string, dev uint64, unmount func(), hung bool) {
	if hung {
		h.abort(t, dev)
	}
	done := make(chan struct{})
	go func() { unmount(); close(done) }()
	select {
	case <-done:
	case <-time.After(opWait):
		t.Errorf("unmount of %s hung; detaching it", mnt)
		h.abort(t, dev)
		_ = exec.Command("fusermount3", "-uz", mnt).Run()
	}
}

// opsHelper is the child process of runOps.
func opsHelper(spec string) error {
	var req opsRequest
	if err := json.Unmarshal([]byte(spec), &req); err != nil {
		return err
	}
	if err := os.Chdir(req.Root); err != nil {
		return err
	}
	for _, p := range req.Warm {
		os.Lstat(p)
	}
	if req.Chdir != "" {
		if err := os.Chdir(req.Chdir); err != nil {
			return err
		}
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	for i, o := range req.Ops {
		res := "OK"
		if err := runOp(o); err != nil {
			res = err.Error()
			var errno syscall.Errno
			if errors.As(err, &errno) {
				res = unix.ErrnoName(errno)
			}
		}
		fmt.Println(i, res)
	}
	return nil
}

func runOp(o hop) error {
	p := o.Path
	old := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	switch o.Op {
	case "ls":
		_, err := os.ReadDir(p)
		return err
	case "stat":
		_, err := os.Lstat(p)
		return err
	case "read":
		_, err := os.ReadFile(p)
		return err
	case "write":
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString("overwritten")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case "chmod":
		return os.Chmod(p, 0o666)
	case "chown":
		return os.Lchown(p, 4242, 4242)
	case "truncate":
		return os.Truncate(p, 0)
	case "utimes":
		return os.Chtimes(p, old, old)
	case "create":
		return os.WriteFile(p, []byte("new"), 0o644)
	case "mkdir":
		return os.Mkdir(p, 0o755)
	case "symlink":
		return os.Symlink("target", p)
	case "rename":
		return os.Rename(p, o.Arg)
	case "unlink":
		return os.Remove(p)
	case "readlink":
		_, err := os.Readlink(p)
		return err
	case "link":
		return os.Link(p, o.Arg)
	case "getxattr":
		// The attribute setxattr would set: absent is ENODATA, which
		// only a readable entry of the right type gives.
		_, err := unix.Lgetxattr(p, "user.hostile", make([]byte, 64))
		return err
	case "setxattr":
		return unix.Lsetxattr(p, "user.hostile", []byte("x"), 0)
	case "listxattr":
		_, err := unix.Llistxattr(p, make([]byte, 1024))
		return err
	}
	return fmt.Errorf("BUG: unknown op %q", o.Op)
}

// TestHardLinkedFileMetadata: the mount's own hard links (more than one
// link, so metadata changes go through the authenticated file) still take
// chmod, chown, utimes and truncate when not open.
func TestHardLinkedFileMetadata(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	a, b := filepath.Join(mnt, "a"), filepath.Join(mnt, "b")
	must(t, os.WriteFile(a, []byte("linked content"), 0o644))
	must(t, os.Link(a, b))
	when := time.Date(2011, 2, 3, 4, 5, 6, 0, time.UTC)
	must(t, os.Truncate(b, 6))
	must(t, os.Chmod(b, 0o600))
	must(t, os.Lchown(b, 4242, 4343))
	must(t, os.Chtimes(b, when, when))
	var st syscall.Stat_t
	must(t, syscall.Stat(a, &st))
	if st.Mtim.Sec != when.Unix() {
		t.Errorf("mtime %d, want %d", st.Mtim.Sec, when.Unix())
	}
	for _, p := range []string{a, b} {
		must(t, syscall.Stat(p, &st))
		if st.Mode&07777 != 0o600 || st.Uid != 4242 || st.Gid != 4343 || st.Nlink != 2 || st.Size != 6 {
			t.Errorf("%s: mode %o uid %d gid %d links %d size %d; want 600 4242 4343 2 6", p, st.Mode&07777, st.Uid, st.Gid, st.Nlink, st.Size)
		}
		if got, err := os.ReadFile(p); err != nil || string(got) != "linked" {
			t.Errorf("%s: %q, %v; want \"linked\"", p, got, err)
		}
	}
}
