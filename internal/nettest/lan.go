// Package nettest holds tools for tests that send and watch real packets in
// network namespaces: a small LAN of "pods" on a bridge, a packet capture on
// an AF_PACKET socket, raw IPv4 injection with forged source addresses, and
// listeners and dialers that run inside a namespace. No external tool
// (tcpdump, nc) and no sleeping: each socket is open before the function
// that makes it returns.
//
// Everything here needs root. Constructors taking a testing.TB register
// their own cleanup and fail the test (never skip it) when they cannot set
// themselves up.
package nettest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/internal/testenv"
)

// LAN prefix and gateway. Every LAN lives in its own namespaces, so LANs of
// tests running at the same time never see each other's addresses.
var (
	LANPrefix  = netip.MustParsePrefix("10.77.0.0/24")
	LANGateway = netip.MustParseAddr("10.77.0.1")
)

// Pod is one namespace of a LAN, with its eth0 on the LAN's bridge.
type Pod struct {
	Name string          // namespace name
	Path string          // namespace path, /run/netns/Name
	NS   *netns.Handle   // open for the test's lifetime
	IP   netip.Addr      // on eth0, in LANPrefix
	Link string          // "eth0"
	NL   *netlink.Handle // netlink inside the namespace
}

// LAN is a bridge namespace (the switch, which also holds LANGateway, so a
// default route exists for addresses such as Service VIPs) and pods on it.
type LAN struct {
	Switch *Pod // IP is LANGateway, Link is the bridge "br0"
	Pods   []*Pod
}

// NewLAN builds a switch and n pods, addressed 10.77.0.10, .11, ...; each pod
// has lo up and a default route via the gateway. rp_filter is off in the
// pods, so that a forged source is dropped (or not) by what a test installs
// rather than by the kernel's reverse-path check. Everything is removed by
// tb.Cleanup.
func NewLAN(tb testing.TB, n int) *LAN {
	tb.Helper()
	testenv.RequireRoot(tb)
	tag := testenv.Name("")
	lan := &LAN{Switch: newPod(tb, "tnt-"+tag+"-sw")}
	lan.Switch.IP, lan.Switch.Link = LANGateway, "br0"
	sw := lan.Switch.NL
	if err := sw.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		tb.Fatalf("add bridge: %v", err)
	}
	mustAddr(tb, sw, "br0", netip.PrefixFrom(LANGateway, LANPrefix.Bits()))
	mustUp(tb, sw, "br0")
	for i := range n {
		p := newPod(tb, fmt.Sprintf("tnt-%s-p%d", tag, i))
		p.IP, p.Link = netip.AddrFrom4([4]byte{10, 77, 0, byte(10 + i)}), "eth0"
		port := fmt.Sprintf("vp%d", i)
		if err := sw.LinkAdd(&netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: port},
			PeerName:      "eth0",
			PeerNamespace: netlink.NsFd(p.NS.Fd()),
		}); err != nil {
			tb.Fatalf("add veth for %s: %v", p.Name, err)
		}
		l, err := sw.LinkByName(port)
		if err != nil {
			tb.Fatal(err)
		}
		br, err := sw.LinkByName("br0")
		if err != nil {
			tb.Fatal(err)
		}
		if err := sw.LinkSetMaster(l, br); err != nil {
			tb.Fatalf("attach %s: %v", port, err)
		}
		mustUp(tb, sw, port)
		mustAddr(tb, p.NL, "eth0", netip.PrefixFrom(p.IP, LANPrefix.Bits()))
		mustUp(tb, p.NL, "eth0")
		eth, err := p.NL.LinkByName("eth0")
		if err != nil {
			tb.Fatal(err)
		}
		if err := p.NL.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: LANGateway.AsSlice()}); err != nil {
			tb.Fatalf("default route in %s: %v", p.Name, err)
		}
		for _, k := range []string{"all", "default", "eth0"} {
			Sysctl(tb, p.NS, "net/ipv4/conf/"+k+"/rp_filter", "0")
		}
		lan.Pods = append(lan.Pods, p)
	}
	return lan
}

// NewNamespace creates a bare namespace (lo up, nothing else) removed by
// tb.Cleanup.
func NewNamespace(tb testing.TB, prefix string) *Pod {
	tb.Helper()
	testenv.RequireRoot(tb)
	return newPod(tb, testenv.Name(prefix))
}

func newPod(tb testing.TB, name string) *Pod {
	tb.Helper()
	if err := netns.Create(name); err != nil {
		tb.Fatalf("create namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := netns.Delete(name); err != nil {
			tb.Errorf("delete namespace %s: %v", name, err)
		}
	})
	h, err := netns.Open(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(vnetns.NsHandle(h.Fd()))
	if err != nil {
		tb.Fatalf("netlink in %s: %v", name, err)
	}
	tb.Cleanup(nl.Close)
	mustUp(tb, nl, "lo")
	return &Pod{Name: name, Path: netns.Path(name), NS: h, NL: nl}
}

// Sysctl writes a per-namespace sysctl such as "net/ipv4/ip_forward".
func Sysctl(tb testing.TB, h *netns.Handle, key, val string) {
	tb.Helper()
	if err := h.Do(func() error { return os.WriteFile("/proc/sys/"+key, []byte(val), 0o644) }); err != nil {
		tb.Fatalf("sysctl %s=%s: %v", key, val, err)
	}
}

func mustUp(tb testing.TB, h *netlink.Handle, name string) {
	tb.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		tb.Fatalf("find %s: %v", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		tb.Fatalf("set %s up: %v", name, err)
	}
}

func mustAddr(tb testing.TB, h *netlink.Handle, dev string, p netip.Prefix) {
	tb.Helper()
	l, err := h.LinkByName(dev)
	if err != nil {
		tb.Fatalf("find %s: %v", dev, err)
	}
	ipn := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
		tb.Fatalf("address %s on %s: %v", p, dev, err)
	}
}
