package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/netns"
)

// builder creates a planned lab step by step. Every object it makes lives
// inside one of the plan's namespaces, so deleting those namespaces removes
// everything: the machine's own network namespace is never touched.
type builder struct {
	plan *Plan
	// step is called before each step with its description; an error stops
	// the build there (tests use it to simulate a crash midway).
	step func(string) error
	// handles are netlink handles per namespace name.
	handles map[string]*netlink.Handle
	fds     map[string]*netns.Handle
}

func (b *builder) run(ctx context.Context) error {
	defer b.close()
	if err := b.do(ctx, "create namespaces", b.createNamespaces); err != nil {
		return err
	}
	if err := b.do(ctx, "underlay switch", b.underlay); err != nil {
		return err
	}
	for _, n := range b.plan.Nodes {
		if err := b.do(ctx, "node "+n.Name, func() error { return b.node(n) }); err != nil {
			return err
		}
	}
	for _, n := range b.plan.Nodes {
		if err := b.do(ctx, "routes to other nodes from "+n.Name, func() error { return b.overlayRoutes(n) }); err != nil {
			return err
		}
	}
	for _, p := range b.plan.Pods {
		if err := b.do(ctx, "pod "+p.Name, func() error { return b.pod(p) }); err != nil {
			return err
		}
	}
	rules := serviceRules(b.plan)
	for _, n := range b.plan.Nodes {
		if err := b.do(ctx, "service rules on "+n.Name, func() error { return nft(ctx, n.NetNS, rules) }); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) do(ctx context.Context, desc string, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.step != nil {
		if err := b.step(desc); err != nil {
			return err
		}
	}
	if err := fn(); err != nil {
		return fmt.Errorf("%s: %w", desc, err)
	}
	return nil
}

func (b *builder) close() {
	for _, h := range b.handles {
		h.Close()
	}
	for _, h := range b.fds {
		h.Close()
	}
}

func (b *builder) createNamespaces() error {
	for _, name := range b.plan.Namespaces() {
		if err := netns.Create(name); err != nil {
			return err
		}
		if err := b.open(name); err != nil {
			return err
		}
		if err := setUp(b.handles[name], "lo"); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// open takes a file and a netlink handle on existing namespaces.
func (b *builder) open(names ...string) error {
	if b.handles == nil {
		b.handles = map[string]*netlink.Handle{}
		b.fds = map[string]*netns.Handle{}
	}
	for _, name := range names {
		fd, err := netns.Open(name)
		if err != nil {
			return err
		}
		b.fds[name] = fd
		h, err := netlink.NewHandleAt(vnetns.NsHandle(fd.Fd()))
		if err != nil {
			return fmt.Errorf("netlink in %s: %w", name, err)
		}
		b.handles[name] = h
	}
	return nil
}

const (
	underlayBridge = "ul0"
	nodeBridge     = "cni0"
	nodeUplink     = "eth0"
	vxlanDev       = "vxlan0"
	podIf          = "eth0"
)

func (b *builder) underlay() error {
	h := b.handles[b.plan.UnderlayNS]
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: underlayBridge}}
	if err := h.LinkAdd(br); err != nil {
		return fmt.Errorf("add bridge %s: %w", underlayBridge, err)
	}
	return setUp(h, underlayBridge)
}

func (b *builder) node(n Node) error {
	h := b.handles[n.NetNS]
	uh := b.handles[b.plan.UnderlayNS]
	for _, kv := range [][2]string{
		{"net/ipv4/ip_forward", "1"},
		// Same-node Service replies are bridged, not routed; conntrack only
		// un-NATs them if bridged IPv4 passes through the ip hooks.
		{"net/bridge/bridge-nf-call-iptables", "1"},
	} {
		if err := b.sysctl(n.NetNS, kv[0], kv[1]); err != nil {
			return err
		}
	}

	// The node's uplink to the underlay switch.
	port := n.UnderlayPort
	if err := uh.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: underlayMTU},
		PeerName:      nodeUplink,
		PeerNamespace: netlink.NsFd(b.fds[n.NetNS].Fd()),
	}); err != nil {
		return fmt.Errorf("add underlay veth: %w", err)
	}
	if err := enslave(uh, port, underlayBridge); err != nil {
		return err
	}
	if err := addAddr(h, nodeUplink, netip.PrefixFrom(n.UnderlayIP, b.plan.UnderlayCIDR.Bits())); err != nil {
		return err
	}
	if err := setUp(h, nodeUplink); err != nil {
		return err
	}

	// The bridge the node's pods hang off, as the CNI bridge plugin makes it.
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: nodeBridge, MTU: PodMTU}}); err != nil {
		return fmt.Errorf("add bridge %s: %w", nodeBridge, err)
	}
	if err := addAddr(h, nodeBridge, netip.PrefixFrom(n.Gateway, n.PodCIDR.Bits())); err != nil {
		return err
	}
	if err := setUp(h, nodeBridge); err != nil {
		return err
	}

	// VXLAN to the other nodes, flannel style: no learning, every remote
	// endpoint configured explicitly.
	uplink, err := h.LinkByName(nodeUplink)
	if err != nil {
		return err
	}
	mac, err := net.ParseMAC(n.VTEPMAC)
	if err != nil {
		return fmt.Errorf("BUG: planned MAC %q: %w", n.VTEPMAC, err)
	}
	if err := h.LinkAdd(&netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: vxlanDev, MTU: PodMTU, HardwareAddr: mac},
		VxlanId:      vxlanVNI,
		VtepDevIndex: uplink.Attrs().Index,
		SrcAddr:      n.UnderlayIP.AsSlice(),
		Port:         vxlanPort,
		Learning:     false,
	}); err != nil {
		return fmt.Errorf("add %s: %w", vxlanDev, err)
	}
	if err := addAddr(h, vxlanDev, netip.PrefixFrom(n.VTEPIP, 32)); err != nil {
		return err
	}
	return setUp(h, vxlanDev)
}

// overlayRoutes sends each other node's pod range through VXLAN, to that
// node's VTEP address, whose MAC and underlay endpoint are written in.
func (b *builder) overlayRoutes(n Node) error {
	h := b.handles[n.NetNS]
	vx, err := h.LinkByName(vxlanDev)
	if err != nil {
		return err
	}
	for _, o := range b.plan.Nodes {
		if o.Name == n.Name {
			continue
		}
		mac, _ := net.ParseMAC(o.VTEPMAC)
		if err := h.NeighSet(&netlink.Neigh{
			LinkIndex: vx.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: o.VTEPIP.AsSlice(), HardwareAddr: mac,
		}); err != nil {
			return fmt.Errorf("neighbour %s: %w", o.VTEPIP, err)
		}
		if err := h.NeighSet(&netlink.Neigh{
			LinkIndex: vx.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: o.UnderlayIP.AsSlice(), HardwareAddr: mac,
		}); err != nil {
			return fmt.Errorf("fdb entry for %s: %w", o.Name, err)
		}
		if err := h.RouteAdd(&netlink.Route{
			LinkIndex: vx.Attrs().Index, Dst: ipNet(o.PodCIDR), Gw: o.VTEPIP.AsSlice(),
			Flags: int(netlink.FLAG_ONLINK),
		}); err != nil {
			return fmt.Errorf("route to %s: %w", o.PodCIDR, err)
		}
	}
	return nil
}

func (b *builder) pod(p Pod) error {
	node, _ := b.plan.Node(p.Node)
	nh := b.handles[node.NetNS]
	ph := b.handles[p.NetNS]
	if err := nh.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.HostVeth, MTU: PodMTU},
		PeerName:      podIf,
		PeerNamespace: netlink.NsFd(b.fds[p.NetNS].Fd()),
	}); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	if err := enslave(nh, p.HostVeth, nodeBridge); err != nil {
		return err
	}
	// A pod reaching its own Service may be balanced to itself. After DNAT
	// br_netfilter bridges that frame back out of the port it came in on,
	// which the bridge refuses unless the port is in hairpin mode (kubelet's
	// hairpin-veth does the same).
	hv, err := nh.LinkByName(p.HostVeth)
	if err != nil {
		return err
	}
	if err := nh.LinkSetHairpin(hv, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", p.HostVeth, err)
	}
	if err := addAddr(ph, podIf, netip.PrefixFrom(p.IP, node.PodCIDR.Bits())); err != nil {
		return err
	}
	if err := setUp(ph, podIf); err != nil {
		return err
	}
	eth, err := ph.LinkByName(podIf)
	if err != nil {
		return err
	}
	if err := ph.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: p.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// sysctl writes a per-namespace sysctl. /proc/sys/net shows the namespace of
// the thread that opens it, so the write happens inside the namespace.
func (b *builder) sysctl(ns, key, val string) error {
	return b.fds[ns].Do(func() error {
		if err := os.WriteFile("/proc/sys/"+key, []byte(val), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), val, err)
		}
		return nil
	})
}

func setUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

func enslave(h *netlink.Handle, port, bridge string) error {
	l, err := h.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find %s: %w", port, err)
	}
	br, err := h.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("find %s: %w", bridge, err)
	}
	if err := h.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", port, bridge, err)
	}
	return setUp(h, port)
}

func addAddr(h *netlink.Handle, dev string, p netip.Prefix) error {
	l, err := h.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("find %s: %w", dev, err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, dev, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// nft applies an nft script inside a namespace. The script runs as one
// transaction: it applies whole or not at all.
func nft(ctx context.Context, ns, script string) error {
	cmd := NamespaceCommand(ctx, ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("nft: %s", strings.TrimSpace(string(out)))
		}
		return fmt.Errorf("nft: %w (is the nftables package installed?)", err)
	}
	return nil
}

// NamespaceCommand returns a command that runs argv inside the named
// namespace, through `ip netns exec` so that the command also sees the
// namespace's own /sys, as it would in a pod.
func NamespaceCommand(ctx context.Context, ns string, argv ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}
