package guard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/internal/nettest"
	"github.com/tencrypt/tencrypt/internal/testenv"
	"github.com/tencrypt/tencrypt/transit/registry"
)

// The values the agent uses.
const (
	tunIf      = "tenc0"
	wgPort     = 51820
	fwMark     = 0xca6c
	routeTable = 51820
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func podConfig(self netip.Addr, peers ...netip.Addr) Config {
	return Config{TunnelIf: tunIf, ListenPort: wgPort, FwMark: fwMark, Self: self, Peers: peers}
}

func mustApply(t *testing.T, ctx context.Context, path string, cfg Config) {
	t.Helper()
	if err := Apply(ctx, path, cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// listTable is the table as `nft list` prints it in the namespace.
func listTable(t *testing.T, ctx context.Context, path string) string {
	t.Helper()
	var out bytes.Buffer
	if err := runNftOut(ctx, path, &out, "", "list", "table", "inet", Table); err != nil {
		t.Fatalf("list table: %v", err)
	}
	return out.String()
}

// waitCounters reads the counters until ok accepts them: packets reach the
// guard's rules a moment after the send that made them returns.
func waitCounters(t *testing.T, ctx context.Context, path string, what string, ok func(Counters) bool) Counters {
	t.Helper()
	for {
		c, err := ReadCounters(ctx, path)
		if err != nil {
			t.Fatalf("ReadCounters: %v", err)
		}
		if ok(c) {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("counters never showed %s: %+v", what, c)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ownNamespace returns a path to the namespace the test's goroutines run in.
// Not /proc/self/ns/net: that is the main thread's, and netns.Create may
// have left the main thread in a namespace it made (a locked goroutine that
// exits on the main thread wedges it there instead of ending it).
func ownNamespace(t *testing.T) string {
	t.Helper()
	runtime.LockOSThread()
	f, err := os.Open("/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd())
}

func TestApplyRemoveInstalled(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "nft")
	ctx := testCtx(t)
	pod := nettest.NewNamespace(t, "tgd-")
	own := ownNamespace(t)
	hostBefore, err := Installed(ctx, own)
	if err != nil {
		t.Fatal(err)
	}

	if ok, err := Installed(ctx, pod.Path); err != nil || ok {
		t.Fatalf("Installed before Apply = %v, %v", ok, err)
	}
	if _, err := ReadCounters(ctx, pod.Path); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("ReadCounters without a guard = %v, want ErrNotInstalled", err)
	}
	self := netip.MustParseAddr("10.77.0.10")
	cfg := podConfig(self, netip.MustParseAddr("10.77.0.11"), netip.MustParseAddr("10.77.0.12"))
	cfg.Services = []registry.Service{{VIP: netip.MustParseAddr("10.96.0.10"), Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 8080}},
		Backends: []netip.Addr{netip.MustParseAddr("10.77.0.11")}}}
	mustApply(t, ctx, pod.Path, cfg)
	if ok, err := Installed(ctx, pod.Path); err != nil || !ok {
		t.Fatalf("Installed after Apply = %v, %v", ok, err)
	}
	// Rules went into the pod's namespace, not the caller's.
	if ok, err := Installed(ctx, own); err != nil || ok != hostBefore {
		t.Fatalf("Installed in the test's own namespace changed to %v (%v)", ok, err)
	}
	first := listTable(t, ctx, pod.Path)
	for _, want := range []string{"10.77.0.11, 10.77.0.12", "dnat ip to 10.77.0.11:8080", `iifname "tenc0" accept`} {
		if !strings.Contains(first, want) {
			t.Errorf("table lacks %q:\n%s", want, first)
		}
	}

	mustApply(t, ctx, pod.Path, cfg)
	if again := listTable(t, ctx, pod.Path); again != first {
		t.Errorf("second Apply changed the table:\n%s\nwant:\n%s", again, first)
	}

	// A smaller configuration replaces, not adds.
	mustApply(t, ctx, pod.Path, podConfig(self, netip.MustParseAddr("10.77.0.13")))
	third := listTable(t, ctx, pod.Path)
	for _, gone := range []string{"10.77.0.11", "10.96.0.10", "dnat"} {
		if strings.Contains(third, gone) {
			t.Errorf("%q still in the table after re-apply:\n%s", gone, third)
		}
	}
	if !strings.Contains(third, "10.77.0.13") {
		t.Errorf("new peer missing:\n%s", third)
	}

	// An invalid configuration changes nothing.
	bad := podConfig(self)
	bad.TunnelIf = `tenc0" accept`
	if err := Apply(ctx, pod.Path, bad); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Apply(invalid) = %v, want ErrInvalidConfig", err)
	}
	if now := listTable(t, ctx, pod.Path); now != third {
		t.Errorf("a refused Apply changed the table:\n%s", now)
	}

	if err := Remove(ctx, pod.Path); err != nil {
		t.Fatal(err)
	}
	if ok, err := Installed(ctx, pod.Path); err != nil || ok {
		t.Fatalf("Installed after Remove = %v, %v", ok, err)
	}
	if err := Remove(ctx, pod.Path); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if err := Apply(ctx, "/nonexistent/ns", cfg); err == nil {
		t.Error("Apply to a missing namespace path succeeded")
	}
}

// TestApplyReplacesIncompatibleTable: a table of the same name laid out
// differently (as another tencrypt version might leave) is replaced whole.
func TestApplyReplacesIncompatibleTable(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := testCtx(t)
	pod := nettest.NewNamespace(t, "tgd-")
	old := "table inet " + Table + " {\n\tchain input { type filter hook input priority 0; policy accept; }\n\tchain stale { }\n}\n"
	if err := runNft(ctx, pod.Path, old, "-f", "-"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, ctx, pod.Path, podConfig(netip.MustParseAddr("10.77.0.10"), netip.MustParseAddr("10.77.0.11")))
	got := listTable(t, ctx, pod.Path)
	if strings.Contains(got, "stale") || !strings.Contains(got, "hook input priority raw") {
		t.Errorf("old table not replaced:\n%s", got)
	}
	if _, err := ReadCounters(ctx, pod.Path); err != nil {
		t.Error(err)
	}
}

// TestRenderedConfigsLoad feeds the kernel every configuration the render
// tests use, to show nft accepts what the renderer writes.
func TestRenderedConfigsLoad(t *testing.T) {
	testenv.RequireRoot(t)
	ctx := testCtx(t)
	pod := nettest.NewNamespace(t, "tgd-")
	many := baseConfig()
	for i := range 200 {
		many.Peers = append(many.Peers, netip.AddrFrom4([4]byte{10, 244, byte(i / 100), byte(i%100 + 2)}))
	}
	for i := range 50 {
		many.Services = append(many.Services, registry.Service{
			VIP:      netip.AddrFrom4([4]byte{10, 96, 0, byte(i + 1)}),
			Ports:    []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 8080}, {Protocol: "udp", Port: 53, TargetPort: 5353}, {Protocol: "tcp", Port: uint16(1000 + i), TargetPort: 0}},
			Backends: many.Peers[:i%5],
		})
	}
	for _, cfg := range []Config{baseConfig(), many} {
		mustApply(t, ctx, pod.Path, cfg)
	}
	if got := listTable(t, ctx, pod.Path); !strings.Contains(got, "numgen random mod 4 map") || !strings.Contains(got, "10.96.0.50") {
		t.Errorf("large configuration incomplete:\n%.2000s", got)
	}
}

// TestIngress: with the guard in pod B, plaintext from a tenant peer A is
// dropped and counted, whether A sends it or a third pod C forges A's (or a
// VIP's) address; traffic from non-peers is untouched.
func TestIngress(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 3)
	a, b, c := lan.Pods[0], lan.Pods[1], lan.Pods[2]
	vip := netip.MustParseAddr("10.96.0.10")
	udp := nettest.ListenUDP(t, b.NS, netip.AddrPortFrom(b.IP, 9000))
	tcpPort := netip.AddrPortFrom(b.IP, 9001)
	tcp := nettest.ListenTCP(t, b.NS, tcpPort)

	// Control: without the guard, A's plaintext and a SYN forged by C are
	// delivered and answered, so the drops below are the guard's doing.
	if err := nettest.SendUDP(ctx, a.NS, udp.Addr, []byte("control-marker")); err != nil {
		t.Fatal(err)
	}
	if err := udp.WaitFor(ctx, []byte("control-marker")); err != nil {
		t.Fatal(err)
	}
	capB := nettest.StartCapture(t, b.NS, "eth0")
	if err := nettest.InjectTCPSYN(c.NS, netip.AddrPortFrom(a.IP, 40001), tcpPort, nil); err != nil {
		t.Fatal(err)
	}
	if !waitSYNACK(ctx, capB, b.IP, 40001) {
		t.Fatal("control: B did not answer a SYN before the guard was applied")
	}
	capB.Stop()

	cfg := podConfig(b.IP, a.IP)
	cfg.Services = []registry.Service{{VIP: vip, Ports: []registry.Port{{Protocol: "udp", Port: 9000, TargetPort: 9000}}, Backends: []netip.Addr{a.IP}}}
	mustApply(t, ctx, b.Path, cfg)
	capB = nettest.StartCapture(t, b.NS, "eth0")

	// From A itself, an ordinary socket, and a SYN from A's real address.
	if err := nettest.SendUDP(ctx, a.NS, udp.Addr, []byte("plain-from-peer")); err != nil {
		t.Fatal(err)
	}
	if err := nettest.InjectTCPSYN(a.NS, netip.AddrPortFrom(a.IP, 40002), tcpPort, []byte("syn-from-peer")); err != nil {
		t.Fatal(err)
	}
	// Forged by C: A's address, and a VIP's.
	if err := nettest.InjectUDP(c.NS, netip.AddrPortFrom(a.IP, 40003), udp.Addr, []byte("forged-peer")); err != nil {
		t.Fatal(err)
	}
	if err := nettest.InjectTCPSYN(c.NS, netip.AddrPortFrom(a.IP, 40004), tcpPort, []byte("forged-syn")); err != nil {
		t.Fatal(err)
	}
	if err := nettest.InjectUDP(c.NS, netip.AddrPortFrom(vip, 9000), udp.Addr, []byte("forged-vip")); err != nil {
		t.Fatal(err)
	}
	// A non-peer (another tenant, or outside) is left alone: C's own address,
	// and a made-up one.
	if err := nettest.SendUDP(ctx, c.NS, udp.Addr, []byte("from-non-peer")); err != nil {
		t.Fatal(err)
	}
	if err := nettest.InjectUDP(c.NS, netip.MustParseAddrPort("10.77.0.99:40005"), udp.Addr, []byte("forged-non-peer")); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"from-non-peer", "forged-non-peer"} {
		if err := udp.WaitFor(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}

	got := waitCounters(t, ctx, b.Path, "4 plaintext-in and 1 vip-in", func(c Counters) bool {
		return c.PlaintextInPackets >= 4 && c.VIPInPackets >= 1
	})
	if got.PlaintextInPackets != 4 || got.VIPInPackets != 1 || got.PlaintextOutPackets != 0 || got.VIPOutPackets != 0 {
		t.Errorf("counters = %+v, want exactly 4 plaintext-in, 1 vip-in, nothing out", got)
	}
	if got.PlaintextInBytes == 0 || got.VIPInBytes == 0 {
		t.Errorf("byte counts missing: %+v", got)
	}
	for _, m := range []string{"plain-from-peer", "forged-peer", "forged-vip"} {
		if udp.Seen([]byte(m)) {
			t.Errorf("listener in B received %q", m)
		}
	}
	if acc := tcp.Accepted(); len(acc) != 0 {
		t.Errorf("B accepted %v", acc)
	}
	// The packets did reach B's interface, and B never answered the SYNs.
	if err := capB.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"plain-from-peer", "syn-from-peer", "forged-peer", "forged-syn", "forged-vip"} {
		if !capB.Seen([]byte(m)) {
			t.Errorf("B's eth0 never saw %q: the test did not send what it meant to", m)
		}
	}
	for _, f := range capB.Frames() {
		if info, ok := nettest.ParseFrame(f); ok && info.Src == b.IP && info.Proto == nettest.ProtoTCP {
			t.Errorf("B sent a TCP segment %+v: a forged SYN was answered", info)
		}
	}
}

// waitSYNACK waits until capture shows src answering a SYN to port.
func waitSYNACK(ctx context.Context, c *nettest.Capture, src netip.Addr, port uint16) bool {
	for ctx.Err() == nil {
		for _, f := range c.Frames() {
			if info, ok := nettest.ParseFrame(f); ok && info.Src == src && info.DstPort == port && info.TCPFlags == 0x12 {
				return true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// TestWireGuardPortNeedsMarkedSocket: UDP from a peer to the WireGuard port
// is let in only for a socket carrying the WireGuard mark, and that socket's
// own sends leave by eth0.
func TestWireGuardPortNeedsMarkedSocket(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 2)
	a, b := lan.Pods[0], lan.Pods[1]
	mustApply(t, ctx, b.Path, podConfig(b.IP, a.IP))
	mustApply(t, ctx, a.Path, podConfig(a.IP, b.IP))
	wgB := netip.AddrPortFrom(b.IP, wgPort)

	unmarked := nettest.ListenUDP(t, b.NS, wgB)
	sendWG := func(payload string) {
		t.Helper()
		conn, err := nettest.DialMarked(ctx, a.NS, "udp4", netip.AddrPortFrom(a.IP, wgPort), wgB, fwMark)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte(payload)); err != nil {
			t.Fatalf("marked send from A's WireGuard port: %v", err)
		}
	}
	sendWG("to-unmarked")
	waitCounters(t, ctx, b.Path, "1 plaintext-in", func(c Counters) bool { return c.PlaintextInPackets >= 1 })
	if unmarked.Seen([]byte("to-unmarked")) {
		t.Error("an unmarked socket on the WireGuard port received a peer's datagram")
	}
	unmarked.Close()

	marked := nettest.ListenUDPMarked(t, b.NS, wgB, fwMark)
	capA := nettest.StartCapture(t, a.NS, "eth0")
	sendWG("to-marked")
	if err := marked.WaitFor(ctx, []byte("to-marked")); err != nil {
		t.Fatal(err)
	}
	capA.Stop()
	if s := capA.Stats(); s.WireGuard < 1 {
		t.Errorf("A's capture counted no WireGuard frame: %+v", s)
	}
	// Unmarked from the WireGuard port is plaintext like any other.
	conn, err := nettest.DialMarked(ctx, a.NS, "udp4", netip.AddrPortFrom(a.IP, wgPort), wgB, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("unmarked-from-wg-port")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("unmarked send to a peer = %v, want EPERM (dropped by the guard)", err)
	}
	if c, err := ReadCounters(ctx, a.Path); err != nil || c.PlaintextOutPackets != 1 {
		t.Errorf("A's counters = %+v, %v; want 1 plaintext-out", c, err)
	}
}

// TestEgressFailClosed: in pod A, traffic to a peer goes into the tunnel
// interface while it exists; once it is gone (and the kernel has removed its
// routes, as when the agent dies), the guard drops that traffic instead of
// letting it out of eth0 in plaintext. Traffic to non-peers is untouched.
func TestEgressFailClosed(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 3)
	a, b, c := lan.Pods[0], lan.Pods[1], lan.Pods[2]
	// Guard first, then tunnel and routes: the agent's order.
	mustApply(t, ctx, a.Path, podConfig(a.IP, b.IP))
	tun := nettest.OpenTUN(t, a.NS, tunIf)
	tunnelRoutes(t, a, b.IP)
	toB := nettest.ListenUDP(t, b.NS, netip.AddrPortFrom(b.IP, 9000))
	toC := nettest.ListenUDP(t, c.NS, netip.AddrPortFrom(c.IP, 9000))
	capA := nettest.StartCapture(t, a.NS, "eth0")

	if err := nettest.SendUDP(ctx, a.NS, toB.Addr, []byte("into-tunnel")); err != nil {
		t.Fatal(err)
	}
	if err := tun.WaitFor(ctx, []byte("into-tunnel")); err != nil {
		t.Fatal(err)
	}

	tun.Close() // the agent dies: the interface and its routes go
	if err := nettest.SendUDP(ctx, a.NS, toB.Addr, []byte("tunnel-gone")); !errors.Is(err, syscall.EPERM) {
		t.Errorf("UDP to a peer without tunnel: %v, want EPERM (dropped by the guard)", err)
	}
	// The kernel keeps retrying a SYN the output hook drops, so connect
	// fails only when its own deadline ends.
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	if conn, err := nettest.Dial(dctx, a.NS, "tcp4", netip.AddrPortFrom(b.IP, 9001)); err == nil {
		conn.Close()
		t.Error("TCP connect to a peer without tunnel succeeded")
	}
	dcancel()
	if err := nettest.SendUDP(ctx, a.NS, toC.Addr, []byte("to-non-peer")); err != nil {
		t.Fatalf("UDP to a non-peer: %v", err)
	}
	if err := toC.WaitFor(ctx, []byte("to-non-peer")); err != nil {
		t.Fatal(err)
	}
	// Sent frames are queued to a capture on the sending side before the
	// send returns, so once Stop has drained the queue the capture is
	// complete.
	if err := capA.Stop(); err != nil {
		t.Fatal(err)
	}
	if !capA.Seen([]byte("to-non-peer")) {
		t.Error("A's capture missed the non-peer datagram: it cannot vouch for the rest")
	}
	capA.AssertNotSeen(t, []byte("tunnel-gone"))
	if capA.Seen([]byte("into-tunnel")) {
		t.Error("the tunnelled datagram also left eth0")
	}
	for _, f := range capA.Frames() {
		if info, ok := nettest.ParseFrame(f); ok && info.Dst == b.IP {
			t.Errorf("a packet to the peer left eth0: %+v", info)
		}
	}
	if toB.Seen([]byte("tunnel-gone")) {
		t.Error("the peer received plaintext")
	}
	got, err := ReadCounters(ctx, a.Path)
	if err != nil {
		t.Fatal(err)
	}
	// The UDP datagram and at least the first SYN (the kernel may retry).
	if got.PlaintextOutPackets < 2 || got.PlaintextInPackets != 0 {
		t.Errorf("counters = %+v, want >= 2 plaintext-out", got)
	}
}

// tunnelRoutes sets up the agent's policy routing in pod p: everything not
// marked looks up table 51820, which sends each peer to the tunnel.
func tunnelRoutes(t *testing.T, p *nettest.Pod, peers ...netip.Addr) {
	t.Helper()
	l, err := p.NL.LinkByName(tunIf)
	if err != nil {
		t.Fatal(err)
	}
	for _, peer := range peers {
		if err := p.NL.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Table: routeTable,
			Dst: &net.IPNet{IP: peer.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			t.Fatalf("route to %s: %v", peer, err)
		}
	}
	r := netlink.NewRule()
	r.Family = unix.AF_INET
	r.Mark = fwMark
	r.Invert = true
	r.Table = routeTable
	r.Priority = 100
	if err := p.NL.RuleAdd(r); err != nil {
		t.Fatalf("ip rule: %v", err)
	}
}

// TestGuardOutlivesItsMaker: the guard is kernel state. The nft process that
// installed it has exited and every handle the test used is closed; a fresh
// handle on the namespace still finds it, and it still drops.
func TestGuardOutlivesItsMaker(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 2)
	a, b := lan.Pods[0], lan.Pods[1]
	mustApply(t, ctx, b.Path, podConfig(b.IP, a.IP))

	h, err := netns.OpenPath(b.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var out []byte
	if err := h.Do(func() (err error) {
		out, err = exec.CommandContext(ctx, "nft", "list", "table", "inet", Table).CombinedOutput()
		return err
	}); err != nil {
		t.Fatalf("nft list in a fresh handle: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "plaintext-in") {
		t.Errorf("guard missing:\n%s", out)
	}
	if err := nettest.SendUDP(ctx, a.NS, netip.AddrPortFrom(b.IP, 9000), []byte("later")); err != nil {
		t.Fatal(err)
	}
	waitCounters(t, ctx, b.Path, "1 plaintext-in", func(c Counters) bool { return c.PlaintextInPackets == 1 })
}

// TestReapplyNeverOpens: re-applying (a reconcile, an agent restart) while
// forged plaintext keeps arriving lets none of it through, and the counters
// carry on across applies: every packet sent is counted.
func TestReapplyNeverOpens(t *testing.T) {
	ctx := testCtx(t)
	lan := nettest.NewLAN(t, 3)
	a, b, c := lan.Pods[0], lan.Pods[1], lan.Pods[2]
	ln := nettest.ListenUDP(t, b.NS, netip.AddrPortFrom(b.IP, 9000))
	mustApply(t, ctx, b.Path, podConfig(b.IP, a.IP))

	stop := make(chan struct{})
	var sent int
	var wg sync.WaitGroup
	var injErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if injErr = nettest.InjectUDP(c.NS, netip.AddrPortFrom(a.IP, 40000), ln.Addr, []byte("during-reapply")); injErr != nil {
				return
			}
			sent++
		}
	})
	for i := range 30 {
		cfg := podConfig(b.IP, a.IP, netip.AddrFrom4([4]byte{10, 77, 1, byte(i)}))
		if i%2 == 1 {
			cfg.Services = []registry.Service{{VIP: netip.MustParseAddr("10.96.0.10"), Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 0}}, Backends: []netip.Addr{a.IP}}}
		}
		mustApply(t, ctx, b.Path, cfg)
	}
	close(stop)
	wg.Wait()
	if injErr != nil {
		t.Fatal(injErr)
	}
	if sent == 0 {
		t.Fatal("nothing was injected")
	}
	got := waitCounters(t, ctx, b.Path, "every injected packet", func(c Counters) bool { return c.PlaintextInPackets >= uint64(sent) })
	if got.PlaintextInPackets != uint64(sent) {
		t.Errorf("plaintext-in = %d, sent %d", got.PlaintextInPackets, sent)
	}
	if ln.Seen([]byte("during-reapply")) {
		t.Error("forged plaintext got through during a re-apply")
	}
	t.Logf("%d forged packets during 30 re-applies, all dropped and counted", sent)
}
