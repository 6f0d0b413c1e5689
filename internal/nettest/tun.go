package nettest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// TUN is a bare TUN interface (no packet-info header) in a namespace whose
// packets a test reads instead of a WireGuard device: whatever the kernel
// routes into it is recorded. Closing it deletes the interface, and the
// kernel removes the routes through it, as when a tunnel's process dies.
type TUN struct {
	Name string
	f    *os.File
	done chan struct{}

	mu      sync.Mutex
	packets [][]byte
	changed chan struct{}
}

// OpenTUN creates the interface name inside h, sets it up, and reads from it
// until Close or tb.Cleanup.
func OpenTUN(tb testing.TB, h *netns.Handle, name string) *TUN {
	tb.Helper()
	var fd int
	err := h.Do(func() error {
		var err error
		fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("create TUN %s: %w", name, err)
		}
		return setLinkUp(name)
	})
	if err != nil {
		tb.Fatal(err)
	}
	t := &TUN{Name: name, f: os.NewFile(uintptr(fd), "tun"), done: make(chan struct{}), changed: make(chan struct{})}
	go t.run()
	tb.Cleanup(t.Close)
	return t
}

// setLinkUp sets an interface up with an ioctl, on the calling thread's
// namespace.
func setLinkUp(name string) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func (t *TUN) run() {
	defer close(t.done)
	buf := make([]byte, 65536)
	for {
		n, err := t.f.Read(buf)
		if err != nil {
			return
		}
		t.mu.Lock()
		t.packets = append(t.packets, bytes.Clone(buf[:n]))
		close(t.changed)
		t.changed = make(chan struct{})
		t.mu.Unlock()
	}
}

// Close deletes the interface and waits for the reader to stop.
func (t *TUN) Close() {
	t.f.Close()
	<-t.done
}

// Seen reports whether any packet read so far contains marker.
func (t *TUN) Seen(marker []byte) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.packets {
		if bytes.Contains(p, marker) {
			return true
		}
	}
	return false
}

// Packets returns copies of the IP packets read so far, in order.
func (t *TUN) Packets() [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([][]byte, len(t.packets))
	for i, p := range t.packets {
		out[i] = bytes.Clone(p)
	}
	return out
}

// WaitFor blocks until a packet containing marker is read, or ctx ends.
func (t *TUN) WaitFor(ctx context.Context, marker []byte) error {
	for {
		t.mu.Lock()
		ch := t.changed
		t.mu.Unlock()
		if t.Seen(marker) {
			return nil
		}
		select {
		case <-ch:
		case <-t.done:
			return fmt.Errorf("TUN %s closed before %q was read", t.Name, marker)
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q on %s: %w", marker, t.Name, ctx.Err())
		}
	}
}
