package netns

import (
	"net"
	"os"
	"testing"

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
