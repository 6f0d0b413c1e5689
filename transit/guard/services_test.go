package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"syscall"
	"testing"

	"github.com/tencrypt/tencrypt/internal/nettest"
)

// TestServiceNAT checks the in-pod Service translation in pod A. Backends B
// and C are deliberately not tenant peers, so plain veths carry them and the
// test can watch the translated packets; D is a peer, reached only through
// the tunnel interface. A itself backs one VIP.
func TestServiceNAT(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 4)
	a, b, c, d := lan.Pods[0], lan.Pods[1], lan.Pods[2], lan.Pods[3]
	vipBC := netip.MustParseAddr("10.96.0.10")
	vipSelf := netip.MustParseAddr("10.96.0.11")
	vipPeer := netip.MustParseAddr("10.96.0.12")
	vipEmpty := netip.MustParseAddr("10.96.0.13")
	cfg := podConfig(a.IP, d.IP)
	cfg.Services = []Service{
		{VIP: vipBC, Ports: []Port{{"tcp", 80, 8080}, {"udp", 53, 5353}}, Backends: []netip.Addr{b.IP, c.IP}},
		{VIP: vipSelf, Ports: []Port{{"tcp", 80, 8081}}, Backends: []netip.Addr{a.IP}},
		{VIP: vipPeer, Ports: []Port{{"udp", 53, 5353}}, Backends: []netip.Addr{d.IP}},
		{VIP: vipEmpty, Ports: []Port{{"udp", 80, 80}}},
	}
	mustApply(t, ctx, a.Path, cfg)

	any := netip.IPv4Unspecified()
	tcpB := nettest.ListenTCP(t, b.NS, netip.AddrPortFrom(any, 8080))
	tcpC := nettest.ListenTCP(t, c.NS, netip.AddrPortFrom(any, 8080))
	udpB := nettest.ListenUDP(t, b.NS, netip.AddrPortFrom(any, 5353))
	udpC := nettest.ListenUDP(t, c.NS, netip.AddrPortFrom(any, 5353))
	self := nettest.ListenTCP(t, a.NS, netip.AddrPortFrom(any, 8081))
	udpD := nettest.ListenUDP(t, d.NS, netip.AddrPortFrom(any, 5353))
	capA := nettest.StartCapture(t, a.NS, "eth0")

	// TCP through the VIP, both ways: the echo arriving on a socket
	// connected to the VIP shows the replies are un-NATed.
	const conns = 40
	for i := range conns {
		echo(t, ctx, a, "tcp4", netip.AddrPortFrom(vipBC, 80), fmt.Sprintf("tcp-svc-%d", i))
	}
	nb, nc := len(tcpB.Accepted()), len(tcpC.Accepted())
	if nb+nc != conns || nb == 0 || nc == 0 {
		t.Errorf("backends accepted %d and %d connections of %d: want all, spread over both (numgen random)", nb, nc, conns)
	}
	for _, from := range append(tcpB.Accepted(), tcpC.Accepted()...) {
		if from.Addr() != a.IP {
			t.Errorf("backend saw a connection from %s, want the client's own address %s (no SNAT)", from, a.IP)
		}
	}
	echo(t, ctx, a, "udp4", netip.AddrPortFrom(vipBC, 53), "udp-svc")
	if !udpB.Seen([]byte("udp-svc")) && !udpC.Seen([]byte("udp-svc")) {
		t.Error("no UDP backend got the datagram")
	}

	// A backend that is the pod itself is reached over loopback.
	echo(t, ctx, a, "tcp4", netip.AddrPortFrom(vipSelf, 80), "self-svc")
	if acc := self.Accepted(); len(acc) != 1 || acc[0].Addr() != a.IP {
		t.Errorf("self backend accepted %v", acc)
	}

	// A peer backend: after DNAT the packet follows the peer's route into
	// the tunnel interface...
	tun := nettest.OpenTUN(t, a.NS, tunIf)
	tunnelRoutes(t, a, d.IP)
	if err := nettest.SendUDP(ctx, a.NS, netip.AddrPortFrom(vipPeer, 53), []byte("vip-to-peer")); err != nil {
		t.Fatal(err)
	}
	if err := tun.WaitFor(ctx, []byte("vip-to-peer")); err != nil {
		t.Fatal(err)
	}
	for _, p := range tun.Packets() {
		if info, ok := nettest.ParseIPv4(p); ok && bytes.Contains(p, []byte("vip-to-peer")) &&
			(info.Dst != d.IP || info.DstPort != 5353) {
			t.Errorf("tunnelled packet goes to %s:%d, want the backend %s:5353", info.Dst, info.DstPort, d.IP)
		}
	}
	// ...and without the tunnel it is dropped, not sent in plaintext.
	tun.Close()
	if err := nettest.SendUDP(ctx, a.NS, netip.AddrPortFrom(vipPeer, 53), []byte("vip-peer-no-tunnel")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("VIP with a peer backend and no tunnel: %v, want EPERM", err)
	}

	// A Service without backends, and a port the Service lacks: dropped,
	// never sent to the VIP in plaintext (for the node's kube-proxy to
	// forward).
	for _, dst := range []netip.AddrPort{netip.AddrPortFrom(vipEmpty, 80), netip.AddrPortFrom(vipBC, 54)} {
		if err := nettest.SendUDP(ctx, a.NS, dst, []byte("vip-unresolved")); !errors.Is(err, syscall.EPERM) {
			t.Errorf("UDP to %s: %v, want EPERM", dst, err)
		}
	}

	got, err := ReadCounters(ctx, a.Path)
	if err != nil {
		t.Fatal(err)
	}
	if got.PlaintextOutPackets != 1 || got.VIPOutPackets != 2 || got.PlaintextInPackets != 0 {
		t.Errorf("counters = %+v, want 1 plaintext-out (peer backend, no tunnel) and 2 vip-out", got)
	}
	if udpD.Seen([]byte("vip-peer")) {
		t.Error("the peer backend received plaintext")
	}
	capA.AssertNotSeen(t, []byte("vip-peer-no-tunnel"))
	capA.AssertNotSeen(t, []byte("vip-unresolved"))
	capA.AssertNotSeen(t, []byte("vip-to-peer"))
	// Translation happened in the pod: nothing addressed to a VIP left eth0,
	// and the connections went to the backends' target port.
	toBackends := 0
	for _, f := range capA.Frames() {
		info, ok := nettest.ParseFrame(f)
		if !ok {
			continue
		}
		if info.Dst == vipBC || info.Dst == vipSelf || info.Dst == vipPeer || info.Dst == vipEmpty {
			t.Errorf("a packet to a VIP left eth0: %+v", info)
		}
		if (info.Dst == b.IP || info.Dst == c.IP) && info.DstPort == 8080 {
			toBackends++
		}
	}
	if toBackends < conns {
		t.Errorf("eth0 carried %d packets to backends' port 8080, want >= %d", toBackends, conns)
	}
}

// echo sends msg from pod p to dst and checks that the same bytes come back
// on the connected socket, which only accepts replies from dst.
func echo(t *testing.T, ctx context.Context, p *nettest.Pod, network string, dst netip.AddrPort, msg string) {
	t.Helper()
	conn, err := nettest.Dial(ctx, p.NS, network, dst)
	if err != nil {
		t.Fatalf("dial %s: %v", dst, err)
	}
	defer conn.Close()
	if got := conn.RemoteAddr().String(); got != dst.String() {
		t.Errorf("connected to %s, want %s", got, dst)
	}
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("write to %s: %v", dst, err)
	}
	deadline, _ := ctx.Deadline()
	conn.SetReadDeadline(deadline)
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo from %s = %q, %v; want %q", dst, buf, err, msg)
	}
}
