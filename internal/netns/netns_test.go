package netns

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/testenv"
)

func TestCreateDoDelete(t *testing.T) {
	testenv.RequireRoot(t)
	name := testenv.Name("tnstest-")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(name) })
	if err := Create(name); err == nil {
		t.Error("creating an existing name succeeded")
	}
	if !Exists(name) {
		t.Fatal("Exists = false after Create")
	}

	h, err := Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// Inside, only loopback exists; a socket made inside stays there after
	// Do returns, unreachable from the host's loopback.
	var ifs []net.Interface
	var ln net.Listener
	err = h.Do(func() error {
		var err error
		if ifs, err = net.Interfaces(); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", ":0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if c, err := net.Dial("tcp4", ln.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the host reached %s: the socket is not in the new namespace", ln.Addr())
	}
	if len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Errorf("interfaces inside: %v, want only lo", ifs)
	}
	after, _ := os.Readlink("/proc/self/ns/net")
	if after != host {
		t.Errorf("caller's namespace changed from %s to %s", host, after)
	}

	id1, err := h.ID()
	if err != nil || id1 == 0 {
		t.Fatalf("ID = %d, %v", id1, err)
	}
	if _, err := OpenPath("/etc/hostname"); err == nil {
		t.Error("OpenPath accepted a file that is not a namespace")
	}

	if err := Delete(name); err != nil {
		t.Fatal(err)
	}
	if Exists(name) {
		t.Error("Exists = true after Delete")
	}
	if err := Delete(name); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := Open(name); err == nil {
		t.Error("Open after Delete succeeded")
	}
}

// TestNoThreadLeftInsideCreatedNamespaces checks that Create and Do return
// every thread they used to the namespace it came from: a thread left in a
// pod's namespace would run unrelated goroutines there.
func TestNoThreadLeftInsideCreatedNamespaces(t *testing.T) {
	testenv.RequireRoot(t)
	host, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		name := testenv.Name("tnsthr-")
		if err := Create(name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { Delete(name) })
		if err := Do(name, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // the thread exited meanwhile
		}
		if ns != host {
			t.Errorf("thread %s is in %s, not the process's namespace %s", task.Name(), ns, host)
		}
	}
}

func TestOpenInRefusesPathsOutsideItsDirectory(t *testing.T) {
	testenv.RequireRoot(t)
	name := testenv.Name("tnsin-")
	if err := Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Delete(name) })
	dir := t.TempDir()
	bind := func(src, dst string) {
		t.Helper()
		if err := os.WriteFile(dst, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind %s on %s: %v", src, dst, err)
		}
		t.Cleanup(func() { unix.Unmount(dst, unix.MNT_DETACH) })
	}
	good := filepath.Join(dir, "pod")
	bind(Path(name), good)
	bind("/proc/self/ns/uts", filepath.Join(dir, "uts"))
	for _, l := range [][2]string{{"host", "/proc/1/ns/net"}, {"alias", good}, {"nsdir", "/proc/self/ns"}} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	h, err := OpenIn(dir, good)
	if err != nil {
		t.Fatalf("OpenIn(%s) = %v", good, err)
	}
	defer h.Close()
	want, _ := Open(name)
	defer want.Close()
	if a, _ := h.ID(); a == 0 || a != must(want.ID()) {
		t.Errorf("OpenIn opened namespace %d, want %d", a, must(want.ID()))
	}
	// ProcPath names the same namespace while the handle is open.
	if h2, err := OpenPath(h.ProcPath()); err != nil || must(h2.ID()) != must(want.ID()) {
		t.Errorf("ProcPath: %v", err)
	} else {
		h2.Close()
	}

	tests := []struct {
		name, path string
		want       error
	}{
		{"relative", "pod", ErrOutside},
		{"dot-dot", dir + "/../" + filepath.Base(dir) + "/pod", ErrOutside},
		{"not clean", dir + "//pod", ErrOutside},
		{"the directory itself", dir, ErrOutside},
		{"another directory", Path(name), ErrOutside},
		{"symlink to the host namespace", filepath.Join(dir, "host"), ErrOutside},
		{"symlink within the directory", filepath.Join(dir, "alias"), ErrOutside},
		{"through a directory symlink", filepath.Join(dir, "nsdir", "net"), ErrOutside},
		{"regular file", filepath.Join(dir, "plain"), ErrNotExist},
		{"another kind of namespace", filepath.Join(dir, "uts"), ErrNotExist},
		{"missing", filepath.Join(dir, "nothing"), os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := OpenIn(dir, tt.path)
			if err == nil {
				h.Close()
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("OpenIn(%s) = %v, want %v", tt.path, err, tt.want)
			}
		})
	}
	if h, err := OpenPath("/proc/self/ns/uts"); !errors.Is(err, ErrNotExist) {
		if err == nil {
			h.Close()
		}
		t.Errorf("OpenPath of a UTS namespace = %v, want ErrNotExist", err)
	}
}

func must(v uint64, err error) uint64 {
	if err != nil {
		panic(err)
	}
	return v
}
