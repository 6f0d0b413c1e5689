package tunnel

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/internal/testenv"
)

// pod is a namespace with one veth, eth0, and a default route through it,
// the shape the lab and CNI bridge plugins give a pod.
type pod struct {
	name string
	ip   netip.Addr
}

func (p pod) path() string { return netns.Path(p.name) }

// podPair makes two pods joined by a veth pair (a wire standing in for the
// pod network) and removes them when the test ends.
func podPair(t *testing.T) (a, b pod) {
	t.Helper()
	testenv.RequireRoot(t)
	a = pod{testenv.Name("ttun-a-"), netip.MustParseAddr("10.250.0.1")}
	b = pod{testenv.Name("ttun-b-"), netip.MustParseAddr("10.250.0.2")}
	for _, p := range []pod{a, b} {
		if err := netns.Create(p.name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { netns.Delete(p.name) })
	}
	ha, hb := openNL(t, a), openNL(t, b)
	fb, err := netns.Open(b.name)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1450}, PeerName: "eth0", PeerNamespace: netlink.NsFd(fb.Fd())}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		h  *netlink.Handle
		ip netip.Addr
	}{{ha, a.ip}, {hb, b.ip}} {
		l, err := x.h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: x.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"lo", "eth0"} {
			ll, _ := x.h.LinkByName(name)
			if err := x.h.LinkSetUp(ll); err != nil {
				t.Fatal(err)
			}
		}
		if err := x.h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Scope: netlink.SCOPE_LINK, Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func openNL(t *testing.T, p pod) *netlink.Handle {
	t.Helper()
	f, err := netns.Open(p.name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := netlink.NewHandleAt(vnetns.NsHandle(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func newTunnel(t *testing.T, p pod) *Tunnel {
	t.Helper()
	tn, err := New(context.Background(), p.path(), p.ip, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tn.Close() })
	return tn
}

func randomPSK(t *testing.T) *cryptocore.Key {
	k := cryptocore.NewRandomKey()
	t.Cleanup(k.Zero)
	return &k
}

func peerOf(tn *Tunnel, p pod) Peer {
	return Peer{PublicKey: tn.PublicKey(), IP: p.ip, Endpoint: netip.AddrPortFrom(p.ip, ListenPort)}
}

// exchange connects from pod `from` to a TCP listener in pod `to` and
// returns what the listener answered, or an error within the deadline.
func exchange(t *testing.T, from, to pod, deadline time.Duration) (string, error) {
	t.Helper()
	var ln net.Listener
	err := netns.Do(to.name, func() error {
		var err error
		ln, err = net.Listen("tcp4", ":7000")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprint(c, "hello from "+to.name)
	}()
	var c net.Conn
	err = netns.Do(from.name, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to.ip, 7000).String(), deadline)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(deadline))
	b, err := io.ReadAll(c)
	return string(b), err
}

func TestTunnelCarriesTraffic(t *testing.T) {
	a, b := podPair(t)
	ta, tb := newTunnel(t, a), newTunnel(t, b)
	if ta.MTU() != 1450-Overhead {
		t.Errorf("tunnel MTU %d, want %d", ta.MTU(), 1450-Overhead)
	}
	psk := randomPSK(t)
	if err := ta.SetPeers([]Peer{peerOf(tb, b)}, psk); err != nil {
		t.Fatal(err)
	}
	if err := tb.SetPeers([]Peer{peerOf(ta, a)}, psk); err != nil {
		t.Fatal(err)
	}
	got, err := exchange(t, a, b, 5*time.Second)
	if err != nil || got != "hello from "+b.name {
		t.Fatalf("exchange: %q, %v", got, err)
	}
	// The bytes went through WireGuard: a handshake happened and both
	// sides counted traffic for the other.
	for _, x := range []struct {
		tn   *Tunnel
		peer PublicKey
	}{{ta, tb.PublicKey()}, {tb, ta.PublicKey()}} {
		st, err := x.tn.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if len(st) != 1 || st[0].PublicKey != x.peer || st[0].LastHandshake.IsZero() || st[0].RxBytes == 0 || st[0].TxBytes == 0 {
			t.Errorf("stats %+v: want one peer %s with a handshake and traffic", st, x.peer.Short())
		}
	}
}

func TestTunnelWrongPSKNoTraffic(t *testing.T) {
	a, b := podPair(t)
	ta, tb := newTunnel(t, a), newTunnel(t, b)
	if err := ta.SetPeers([]Peer{peerOf(tb, b)}, randomPSK(t)); err != nil {
		t.Fatal(err)
	}
	if err := tb.SetPeers([]Peer{peerOf(ta, a)}, randomPSK(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := exchange(t, a, b, 2*time.Second); err == nil {
		t.Fatalf("exchange with mismatched pre-shared keys succeeded: %q", got)
	}
	st, _ := tb.Stats()
	if len(st) != 1 || !st[0].LastHandshake.IsZero() {
		t.Errorf("a handshake completed without the tenant's pre-shared key: %+v", st)
	}
}

func TestTunnelPeerReplacedWithNewKey(t *testing.T) {
	a, b := podPair(t)
	ta, tb := newTunnel(t, a), newTunnel(t, b)
	psk := randomPSK(t)
	ta.SetPeers([]Peer{peerOf(tb, b)}, psk)
	tb.SetPeers([]Peer{peerOf(ta, a)}, psk)
	if _, err := exchange(t, a, b, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	old := tb.PublicKey()

	// Pod b restarts: same address, new key pair.
	tb.Close()
	tb2 := newTunnel(t, b)
	if tb2.PublicKey() == old {
		t.Fatal("a new tunnel reused the old key")
	}
	tb2.SetPeers([]Peer{peerOf(ta, a)}, psk)
	if err := ta.SetPeers([]Peer{peerOf(tb2, b)}, psk); err != nil {
		t.Fatal(err)
	}
	st, _ := ta.Stats()
	if len(st) != 1 || st[0].PublicKey != tb2.PublicKey() {
		t.Errorf("a's peers after the restart: %+v, want only the new key", st)
	}
	if got, err := exchange(t, a, b, 5*time.Second); err != nil {
		t.Fatalf("exchange with the restarted pod: %q, %v", got, err)
	}
}

func TestParseStats(t *testing.T) {
	text := "private_key=00\nlisten_port=51820\npublic_key=" + fmt.Sprintf("%064x", 1) +
		"\nendpoint=10.0.0.2:51820\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\nrx_bytes=10\ntx_bytes=20\nallowed_ip=10.0.0.2/32\n" +
		"public_key=" + fmt.Sprintf("%064x", 2) + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\n"
	st, err := parseStats([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 2 || st[0].RxBytes != 10 || st[0].TxBytes != 20 || st[0].IP != netip.MustParseAddr("10.0.0.2") ||
		st[0].LastHandshake != time.Unix(1700000000, 5) || !st[1].LastHandshake.IsZero() || st[1].PublicKey[31] != 2 {
		t.Errorf("parsed %+v", st)
	}
	if _, err := parseStats([]byte("public_key=zz\n")); err == nil {
		t.Error("a bad public key parsed")
	}
}
