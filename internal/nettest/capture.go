package nettest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// Capture records every frame seen on one interface of one namespace, in
// both directions, from an AF_PACKET socket. The socket is bound before
// StartCapture returns, so a test may send traffic right away.
//
// A frame sent from a namespace is queued to the capture's socket while it
// is transmitted, before the send returns (the veth transmit path copies it
// to packet sockets); a received frame may be queued a moment later, from
// the receiving CPU's backlog. Seen, Frames and Stats show only what the
// reader goroutine has taken from the queue; Stop drains the rest. So on the
// sending side, Stop after the sends and the capture is complete. On a
// receiving interface, first WaitFor something sent after what must not
// appear, on the same path, then Stop.
type Capture struct {
	fd     int
	wakeR  int
	wakeW  int
	done   chan struct{}
	once   sync.Once
	ifname string

	mu      sync.Mutex
	frames  [][]byte
	changed chan struct{} // closed and replaced whenever frames grows
	err     error         // a read error that ended the capture
	drops   uint64        // counted by the kernel (socket buffer full)
}

// Stats are what a Capture has counted so far.
type Stats struct {
	Frames    int // all frames
	WireGuard int // IPv4 UDP frames from or to WireGuardPort
	// Dropped counts frames the kernel could not queue to the capture. A
	// capture with drops cannot prove that something was never sent.
	Dropped uint64
}

// StartCapture opens a capture on ifname inside the namespace h and stops it
// at tb.Cleanup.
func StartCapture(tb testing.TB, h *netns.Handle, ifname string) *Capture {
	tb.Helper()
	c, err := OpenCapture(h, ifname)
	if err != nil {
		tb.Fatalf("capture on %s: %v", ifname, err)
	}
	tb.Cleanup(func() { c.Stop() })
	return c
}

// OpenCapture is StartCapture without a testing.TB; the caller must Stop it.
func OpenCapture(h *netns.Handle, ifname string) (*Capture, error) {
	c := &Capture{fd: -1, ifname: ifname, done: make(chan struct{}), changed: make(chan struct{})}
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0 at socket() receives nothing; bind() then sets the
		// protocol and the interface together, so no frame from another
		// interface slips in between.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		// A large buffer so a burst is not lost while the reader sleeps.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind packet socket to %s: %w", ifname, err)
		}
		return nil
	})
	if err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(c.fd)
		return nil, err
	}
	c.wakeR, c.wakeW = p[0], p[1]
	go c.run()
	return c, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// run reads frames until Stop, then drains the socket once more so that
// everything queued before Stop is recorded.
func (c *Capture) run() {
	defer close(c.done)
	buf := make([]byte, 256<<10)
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}, {Fd: int32(c.wakeR), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			c.fail(fmt.Errorf("poll: %w", err))
			return
		}
		if err := c.drain(buf); err != nil {
			c.fail(err)
			return
		}
		if fds[1].Revents != 0 {
			return
		}
	}
}

func (c *Capture) drain(buf []byte) error {
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read from %s: %w", c.ifname, err)
		}
		f := bytes.Clone(buf[:n])
		c.mu.Lock()
		c.frames = append(c.frames, f)
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *Capture) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

// Stop drains what the kernel has queued, stops reading and closes the
// socket. It may be called more than once; it returns the error, if any,
// that ended the capture early.
func (c *Capture) Stop() error {
	c.once.Do(func() {
		unix.Write(c.wakeW, []byte{1})
		<-c.done
		// PACKET_STATISTICS: tp_packets, tp_drops (reset on read, so read
		// once, here).
		var st unix.TpacketStats
		l := uint32(unsafe.Sizeof(st))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(c.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
			uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0)
		c.mu.Lock()
		if errno == 0 {
			c.drops = uint64(st.Drops)
		} else if c.err == nil {
			c.err = fmt.Errorf("packet statistics: %w", errno)
		}
		c.mu.Unlock()
		unix.Close(c.fd)
		unix.Close(c.wakeR)
		unix.Close(c.wakeW)
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Seen reports whether any frame recorded so far contains marker.
func (c *Capture) Seen(marker []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.frames {
		if bytes.Contains(f, marker) {
			return true
		}
	}
	return false
}

// WaitFor blocks until a frame containing marker has been recorded, or ctx
// ends.
func (c *Capture) WaitFor(ctx context.Context, marker []byte) error {
	seen := 0
	for {
		c.mu.Lock()
		for ; seen < len(c.frames); seen++ {
			if bytes.Contains(c.frames[seen], marker) {
				c.mu.Unlock()
				return nil
			}
		}
		ch, err := c.changed, c.err
		c.mu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-c.done:
			if !c.Seen(marker) {
				return fmt.Errorf("capture on %s stopped before %q was seen", c.ifname, marker)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q on %s: %w", marker, c.ifname, ctx.Err())
		}
	}
}

// Frames returns copies of the frames recorded so far, in order.
func (c *Capture) Frames() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([][]byte, len(c.frames))
	for i, f := range c.frames {
		out[i] = bytes.Clone(f)
	}
	return out
}

// Stats counts the frames recorded so far. Dropped is known only after Stop.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Frames: len(c.frames), Dropped: c.drops}
	for _, f := range c.frames {
		if info, ok := ParseFrame(f); ok && info.Proto == ProtoUDP &&
			(info.SrcPort == WireGuardPort || info.DstPort == WireGuardPort) {
			s.WireGuard++
		}
	}
	return s
}

// AssertNotSeen stops the capture and fails the test if any frame contained
// marker, or if the kernel dropped frames (then absence proves nothing).
func (c *Capture) AssertNotSeen(tb testing.TB, marker []byte) {
	tb.Helper()
	if err := c.Stop(); err != nil {
		tb.Fatalf("capture on %s: %v", c.ifname, err)
	}
	if c.Seen(marker) {
		tb.Errorf("capture on %s saw %q", c.ifname, marker)
	}
	if s := c.Stats(); s.Dropped > 0 {
		tb.Errorf("capture on %s lost %d frames: cannot prove %q was never sent", c.ifname, s.Dropped, marker)
	}
}
