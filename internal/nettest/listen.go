package nettest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// Received is one datagram, or one read on a TCP connection.
type Received struct {
	From netip.AddrPort
	Data []byte
}

// Listener records what arrives on a UDP or TCP socket inside a namespace,
// and echoes it back (each datagram to its sender, each read on its TCP
// connection), so a client can check the path both ways: through a Service
// DNAT, the echo only reaches a connected client socket if the reply is
// un-NATed back to the VIP.
type Listener struct {
	Addr netip.AddrPort // where it listens

	closeFn func() error
	wg      sync.WaitGroup

	mu       sync.Mutex
	got      []Received
	accepted []netip.AddrPort // TCP peers, in accept order
	changed  chan struct{}
}

// ListenUDP listens on addr (port 0 picks one) inside h until tb.Cleanup.
func ListenUDP(tb testing.TB, h *netns.Handle, addr netip.AddrPort) *Listener {
	tb.Helper()
	return ListenUDPMarked(tb, h, addr, 0)
}

// ListenUDPMarked is ListenUDP on a socket with SO_MARK set to mark (0: no
// mark), as WireGuard's socket has.
func ListenUDPMarked(tb testing.TB, h *netns.Handle, addr netip.AddrPort, mark uint32) *Listener {
	tb.Helper()
	var pc *net.UDPConn
	if err := h.Do(func() error {
		lc := net.ListenConfig{Control: markControl(mark)}
		c, err := lc.ListenPacket(context.Background(), "udp4", addr.String())
		if err != nil {
			return err
		}
		pc = c.(*net.UDPConn)
		return nil
	}); err != nil {
		tb.Fatalf("listen udp %s: %v", addr, err)
	}
	l := &Listener{Addr: pc.LocalAddr().(*net.UDPAddr).AddrPort(), closeFn: pc.Close, changed: make(chan struct{})}
	l.wg.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			l.record(Received{From: from, Data: bytes.Clone(buf[:n])}, false)
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	})
	tb.Cleanup(l.Close)
	return l
}

// ListenTCP listens on addr (port 0 picks one) inside h until tb.Cleanup.
func ListenTCP(tb testing.TB, h *netns.Handle, addr netip.AddrPort) *Listener {
	tb.Helper()
	var ln *net.TCPListener
	if err := h.Do(func() (err error) {
		ln, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr))
		return err
	}); err != nil {
		tb.Fatalf("listen tcp %s: %v", addr, err)
	}
	l := &Listener{Addr: ln.Addr().(*net.TCPAddr).AddrPort(), changed: make(chan struct{})}
	var conns sync.Map
	l.closeFn = func() error {
		err := ln.Close()
		conns.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		return err
	}
	l.wg.Go(func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			conns.Store(c, true)
			from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			l.mu.Lock()
			l.accepted = append(l.accepted, from)
			l.mu.Unlock()
			l.record(Received{From: from}, true)
			l.wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 65536)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						l.record(Received{From: from, Data: bytes.Clone(buf[:n])}, false)
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			})
		}
	})
	tb.Cleanup(l.Close)
	return l
}

func (l *Listener) record(r Received, onlyNotify bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !onlyNotify {
		l.got = append(l.got, r)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// Close stops the listener and its connections and waits for its goroutines.
func (l *Listener) Close() {
	l.closeFn()
	l.wg.Wait()
}

// Seen reports whether anything received so far contained marker.
func (l *Listener) Seen(marker []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.got {
		if bytes.Contains(r.Data, marker) {
			return true
		}
	}
	return false
}

// Received returns what arrived so far.
func (l *Listener) Received() []Received {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Received(nil), l.got...)
}

// Accepted returns the remote addresses of the TCP connections accepted so far.
func (l *Listener) Accepted() []netip.AddrPort {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]netip.AddrPort(nil), l.accepted...)
}

// WaitFor blocks until something containing marker arrives, or ctx ends.
func (l *Listener) WaitFor(ctx context.Context, marker []byte) error {
	for {
		l.mu.Lock()
		ch := l.changed
		l.mu.Unlock()
		if l.Seen(marker) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %q on %s: %w", marker, l.Addr, ctx.Err())
		}
	}
}

// Dial connects from inside h (the socket belongs to h's namespace). network
// is "tcp4" or "udp4". For UDP nothing is sent until the first Write.
func Dial(ctx context.Context, h *netns.Handle, network string, addr netip.AddrPort) (net.Conn, error) {
	return DialMarked(ctx, h, network, netip.AddrPort{}, addr, 0)
}

// DialMarked is Dial from a socket bound to local (the zero AddrPort: any)
// with SO_MARK set to mark (0: no mark). With local port 51820 and the
// WireGuard mark it sends what a WireGuard socket would.
func DialMarked(ctx context.Context, h *netns.Handle, network string, local, addr netip.AddrPort, mark uint32) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() (err error) {
		d := net.Dialer{Control: markControl(mark)}
		if local.IsValid() {
			if network == "udp4" {
				d.LocalAddr = net.UDPAddrFromAddrPort(local)
			} else {
				d.LocalAddr = net.TCPAddrFromAddrPort(local)
			}
		}
		c, err = d.DialContext(ctx, network, addr.String())
		return err
	})
	return c, err
}

func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_MARK %#x: %w", mark, serr)
		}
		return nil
	}
}

// SendUDP sends one datagram from an ordinary socket inside h and returns
// the send's error: a packet dropped by an nftables output rule fails with
// EPERM, which the caller may expect.
func SendUDP(ctx context.Context, h *netns.Handle, dst netip.AddrPort, payload []byte) error {
	c, err := Dial(ctx, h, "udp4", dst)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(payload)
	return err
}
