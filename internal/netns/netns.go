// Package netns creates, enters and removes named Linux network namespaces,
// the same way iproute2 does (a bind mount under /run/netns), so that
// namespaces made here are visible to `ip netns` and the other way round.
//
// A network namespace is a property of an OS thread. Do runs a function on a
// thread locked into the namespace; sockets, TUN devices and netlink handles
// created there stay in that namespace after the thread leaves it.
package netns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 keeps named namespaces.
const Dir = "/run/netns"

// ErrNotExist reports a namespace name with no namespace behind it.
var ErrNotExist = errors.New("network namespace does not exist")

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether a named namespace is mounted.
func Exists(name string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(Path(name), &st); err != nil {
		return false
	}
	// An unmounted leftover file lives on the /run tmpfs; a live namespace is
	// an nsfs mount.
	return st.Type == unix.NSFS_MAGIC
}

// Create makes a new, empty network namespace and names it. The calling
// goroutine's namespace is unchanged. Create fails if the name is taken.
func Create(name string) (err error) {
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", Dir, err)
	}
	// iproute2 makes /run/netns a shared mount so that later mounts under it
	// propagate to other mount namespaces; do the same so `ip netns exec`
	// from any shell sees our namespaces.
	if err := makeShared(Dir); err != nil {
		return err
	}
	p := Path(name)
	f, err := os.OpenFile(p, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create namespace %q: %w", name, err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(p)
		}
	}()

	// unshare(CLONE_NEWNET) moves the calling thread into a fresh namespace.
	// Do it on a locked thread and move the thread back afterwards, so no
	// other goroutine ever runs in the new namespace. Letting the thread die
	// instead would not do: if it is the main thread, Go keeps it (wedged)
	// and /proc/self/ns/net would then name the new namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		orig, err := os.Open(self)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		merr := unix.Mount(self, p, "none", unix.MS_BIND, "")
		if merr != nil {
			merr = fmt.Errorf("bind-mount namespace to %s: %w", p, merr)
		}
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread stays locked in the new namespace and is retired
			// with this goroutine.
			errc <- errors.Join(merr, fmt.Errorf("return to original namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- merr
	}()
	return <-errc
}

func makeShared(dir string) error {
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	// Not a mount point yet: bind it onto itself first, as iproute2 does.
	if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind-mount %s: %w", dir, err)
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s a shared mount: %w", dir, err)
	}
	return nil
}

// Delete unmounts and removes a named namespace. The kernel frees the
// namespace, and every interface in it, once no process or open file holds
// it. Deleting a name that does not exist is not an error, so that cleanup can
// be repeated.
func Delete(name string) error {
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %q: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove namespace %q: %w", name, err)
	}
	return nil
}

// List returns the names of the mounted namespaces under Dir.
func List() ([]string, error) {
	entries, err := os.ReadDir(Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// Handle is an open reference to a namespace. It keeps the namespace alive
// while open, even if its name is deleted.
type Handle struct{ f *os.File }

// Open returns a handle to the named namespace.
func Open(name string) (*Handle, error) {
	if !Exists(name) {
		return nil, fmt.Errorf("%w: %q", ErrNotExist, name)
	}
	return OpenPath(Path(name))
}

// OpenPath returns a handle to the namespace at a path: a name under Dir,
// /proc/PID/ns/net, or a CNI runtime's bind mount.
func OpenPath(path string) (*Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", path, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a namespace", ErrNotExist, path)
	}
	return &Handle{f: f}, nil
}

// ID identifies the namespace: it changes when a pod's namespace is
// replaced by a new one, even at the same path.
func (h *Handle) ID() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h.f.Fd()), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// Fd returns the namespace file descriptor, valid until Close.
func (h *Handle) Fd() int { return int(h.f.Fd()) }

// Close releases the handle.
func (h *Handle) Close() error { return h.f.Close() }

// Do runs fn on an OS thread that has entered the namespace, then returns the
// thread to its original namespace. If the thread cannot be restored it is
// retired (left locked, so it exits with the goroutine) rather than returned
// to the scheduler in the wrong namespace.
func (h *Handle) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(h.Fd(), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Thread stays locked and dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Do runs fn inside the named namespace; see Handle.Do.
func Do(name string, fn func() error) error {
	h, err := Open(name)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.Do(fn)
}
