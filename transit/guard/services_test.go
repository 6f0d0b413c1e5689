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
	"github.com/tencrypt/tencrypt/transit/registry"
)

// TestServiceNAT checks the in-pod Service translation in pod A. Backends B
// and C are tenant peers, reached through the tunnel interface, where the
// test reads the translated packets; A itself backs one VIP. (Replies coming
// back un-NATed from the VIP need a real tunnel: tests/ checks them with
// echoes through WireGuard.)
func TestServiceNAT(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 3)
	a, b, c := lan.Pods[0], lan.Pods[1], lan.Pods[2]
	vipBC := netip.MustParseAddr("10.96.0.10")
	vipSelf := netip.MustParseAddr("10.96.0.11")
	vipEmpty := netip.MustParseAddr("10.96.0.13")
	cfg := podConfig(a.IP, b.IP, c.IP)
	cfg.Services = []registry.Service{
		{VIP: vipBC, Ports: []registry.Port{{Protocol: "udp", Port: 53, TargetPort: 5353}, {Protocol: "tcp", Port: 80, TargetPort: 8080}}, Backends: []netip.Addr{b.IP, c.IP}},
		{VIP: vipSelf, Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 8081}}, Backends: []netip.Addr{a.IP}},
		{VIP: vipEmpty, Ports: []registry.Port{{Protocol: "udp", Port: 80, TargetPort: 80}}},
	}
	mustApply(t, ctx, a.Path, cfg)
	self := nettest.ListenTCP(t, a.NS, netip.AddrPortFrom(netip.IPv4Unspecified(), 8081))
	capA := nettest.StartCapture(t, a.NS, "eth0")
	tun := nettest.OpenTUN(t, a.NS, tunIf)
	tunnelRoutes(t, a, b.IP, c.IP)

	// Through the VIP, after DNAT each datagram follows its backend's route
	// into the tunnel, addressed to the backend's target port, spread over
	// both backends (numgen random).
	const sends = 40
	for i := range sends {
		if err := nettest.SendUDP(ctx, a.NS, netip.AddrPortFrom(vipBC, 53), []byte(fmt.Sprintf("vip-udp-%d;", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := tun.WaitFor(ctx, []byte(fmt.Sprintf("vip-udp-%d;", sends-1))); err != nil {
		t.Fatal(err)
	}
	perBackend := map[netip.Addr]int{}
	for _, p := range tun.Packets() {
		info, ok := nettest.ParseIPv4(p)
		if !ok || !bytes.Contains(p, []byte("vip-udp-")) {
			continue
		}
		if info.DstPort != 5353 || (info.Dst != b.IP && info.Dst != c.IP) || info.Src != a.IP {
			t.Errorf("tunnelled packet %s -> %s:%d, want %s -> a backend's :5353", info.Src, info.Dst, info.DstPort, a.IP)
		}
		perBackend[info.Dst]++
	}
	if perBackend[b.IP]+perBackend[c.IP] != sends || perBackend[b.IP] == 0 || perBackend[c.IP] == 0 {
		t.Errorf("datagrams per backend %v, want all %d spread over both", perBackend, sends)
	}

	// A backend that is the pod itself is reached over loopback, and the
	// echo on a socket connected to the VIP shows the reply is un-NATed.
	echo(t, ctx, a, "tcp4", netip.AddrPortFrom(vipSelf, 80), "self-svc")
	if acc := self.Accepted(); len(acc) != 1 || acc[0].Addr() != a.IP {
		t.Errorf("self backend accepted %v", acc)
	}

	// A UDP "connection" to the VIP is open; the tunnel then goes (the agent
	// died): the same socket's next datagram is dropped, not sent in clear.
	conn, err := nettest.Dial(ctx, a.NS, "udp4", netip.AddrPortFrom(vipBC, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("vip-flow-before;")); err != nil {
		t.Fatal(err)
	}
	if err := tun.WaitFor(ctx, []byte("vip-flow-before;")); err != nil {
		t.Fatal(err)
	}
	tun.Close()
	if _, err := conn.Write([]byte("vip-flow-after")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("VIP flow with no tunnel: %v, want EPERM", err)
	}
	if err := nettest.SendUDP(ctx, a.NS, netip.AddrPortFrom(vipBC, 53), []byte("vip-no-tunnel")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("new VIP datagram with no tunnel: %v, want EPERM", err)
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
	if got.PlaintextOutPackets != 2 || got.VIPOutPackets != 2 || got.PlaintextInPackets != 0 {
		t.Errorf("counters = %+v, want 2 plaintext-out (VIP flows with no tunnel) and 2 vip-out", got)
	}
	for _, m := range []string{"vip-flow-after", "vip-no-tunnel", "vip-unresolved", "vip-udp-", "vip-flow-before"} {
		capA.AssertNotSeen(t, []byte(m))
	}
	for _, f := range capA.Frames() {
		if info, ok := nettest.ParseFrame(f); ok && (info.Dst == vipBC || info.Dst == vipSelf || info.Dst == vipEmpty || info.Dst == b.IP || info.Dst == c.IP) {
			t.Errorf("a packet to a VIP or a peer left eth0: %+v", info)
		}
	}
}

// TestDepartedPeerFlowStaysClosed: a peer leaves the tenant (its pod was
// deleted or re-addressed): the agent takes it out of the peer set and its
// route goes. A socket still connected to it must not start sending in
// plaintext through eth0.
func TestDepartedPeerFlowStaysClosed(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 2)
	a, b := lan.Pods[0], lan.Pods[1]
	mustApply(t, ctx, a.Path, podConfig(a.IP, b.IP))
	tun := nettest.OpenTUN(t, a.NS, tunIf)
	tunnelRoutes(t, a, b.IP)
	capA := nettest.StartCapture(t, a.NS, "eth0")
	conn, err := nettest.Dial(ctx, a.NS, "udp4", netip.AddrPortFrom(b.IP, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("while-peer;")); err != nil {
		t.Fatal(err)
	}
	if err := tun.WaitFor(ctx, []byte("while-peer;")); err != nil {
		t.Fatal(err)
	}
	// What the agent does when b leaves: guard without b, then no tunnel
	// route to it.
	mustApply(t, ctx, a.Path, podConfig(a.IP))
	tun.Close()
	if _, err := conn.Write([]byte("after-departure")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("the departed peer's open flow: %v, want EPERM (dropped by the guard)", err)
	}
	capA.AssertNotSeen(t, []byte("after-departure"))
	// A new flow to the same address is ordinary traffic now: the address
	// may belong to another tenant's pod.
	if err := nettest.SendUDP(ctx, a.NS, netip.AddrPortFrom(b.IP, 9001), []byte("new-flow")); err != nil {
		t.Errorf("a new flow to a former peer: %v, want it to pass", err)
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
