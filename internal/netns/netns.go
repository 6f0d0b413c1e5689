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
	"strings"

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
// /proc/PID/ns/net, or a CNI runtime's bind mount. The path is trusted: use
// OpenIn for a path that comes from elsewhere (a registry).
func OpenPath(path string) (*Handle, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open namespace %s: %w", path, err)
	}
	return checkNet(f, path)
}

// ErrOutside reports a namespace path that is not under the directory it
// must be under, or reaches its file through a symbolic link.
var ErrOutside = errors.New("namespace path outside its directory")

// OpenIn returns a handle to the network namespace at path, which must name
// a file beneath dir (Dir, or the directory a container runtime keeps pod
// namespaces in) without "..", symbolic links or /proc magic links on the
// way, and must be a network namespace. It is how an agent opens a path it
// read from the registry: whoever writes the registry must not be able to
// make the agent act in another namespace (the host's, through a link to
// /proc/1/ns/net) or on another kind of file. The check and the use are one
// open: the handle is the file that was checked.
func OpenIn(dir, path string) (*Handle, error) {
	rel, err := filepath.Rel(dir, path)
	if err != nil || !filepath.IsAbs(path) || filepath.Clean(path) != path || rel == "." ||
		rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("%w: %q is not a clean absolute path under %s", ErrOutside, path, dir)
	}
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open namespace directory %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("%w: %s goes through a symbolic link or out of %s", ErrOutside, path, dir)
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("open namespace %s: openat2 is missing (Linux 5.6 or later is needed): %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("open namespace %s: %w", path, err)
	}
	return checkNet(os.NewFile(uintptr(fd), path), path)
}

// checkNet keeps f if it is a network namespace (an nsfs file of type
// CLONE_NEWNET) and closes it otherwise.
func checkNet(f *os.File, path string) (*Handle, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != unix.NSFS_MAGIC {
		f.Close()
		return nil, fmt.Errorf("%w: %s is not a namespace", ErrNotExist, path)
	}
	if t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		f.Close()
		return nil, fmt.Errorf("%w: %s is a namespace but not a network namespace", ErrNotExist, path)
	}
	return &Handle{f: f}, nil
}

// ProcPath is a path that names this handle's namespace for as long as the
// handle is open (/proc/self/fd/N), for APIs that take a path.
func (h *Handle) ProcPath() string { return fmt.Sprintf("/proc/self/fd/%d", h.f.Fd()) }

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
