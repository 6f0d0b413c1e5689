// Package tunnel gives one pod a WireGuard device: a TUN interface inside
// the pod's network namespace driven by wireguard-go running in the agent,
// a UDP socket in the same namespace, and the policy routing that steers the
// tenant's peers into it.
//
// Inside the pod, after New and SetPeers:
//
//	tenc0            TUN device, MTU = uplink MTU - Overhead
//	udp :51820       wireguard-go's socket; its packets carry FwMark
//	rule             not fwmark FwMark lookup RouteTable
//	table RouteTable peer-ip/32 dev tenc0 src pod-ip, one per peer
//
// Plaintext to a peer matches the rule and enters tenc0; the encrypted
// packets wireguard-go sends carry the mark, skip the rule and leave through
// the pod's normal route. The table holds only /32s of the tenant's peers, so
// traffic to anything else never sees the tunnel.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/internal/netns"
)

const (
	// DeviceName is the tunnel interface in every pod.
	DeviceName = "tenc0"
	// ListenPort is WireGuard's UDP port in every pod.
	ListenPort = 51820
	// FwMark marks wireguard-go's own packets so they bypass RouteTable.
	FwMark = 0xca6c
	// RouteTable holds the routes to the tenant's peers.
	RouteTable = 51820
	// RulePriority places the tunnel rule before the main table (32766).
	RulePriority = 10000
	// Overhead is what WireGuard adds to an IPv4 packet: outer IPv4 20,
	// UDP 8, WireGuard header 16, Poly1305 tag 16.
	Overhead = 60
)

// Peer is another pod of the tenant, as the tunnel needs it.
type Peer struct {
	PublicKey PublicKey
	// IP is the peer pod's address: the only source accepted from it
	// (WireGuard's allowed IP) and the destination routed to it.
	IP netip.Addr
	// Endpoint is where its WireGuard socket listens, normally IP:ListenPort.
	Endpoint netip.AddrPort
}

// Tunnel is one pod's WireGuard device. Its methods are safe for
// concurrent use.
type Tunnel struct {
	podIP netip.Addr
	ns    *netns.Handle
	nl    *netlink.Handle
	dev   *device.Device
	pub   PublicKey
	mtu   int
	log   *slog.Logger

	mu sync.Mutex // guards everything below
	// uapi configures dev and rt writes its routes (dev and nl; fakes in
	// unit tests); uapi is nil once the tunnel is closed.
	uapi uapiDevice
	rt   routeWriter
	// peers and psk are what the device holds. routed are the peer
	// addresses whose route is known to be in RouteTable: a route write
	// that failed is absent, so the next SetPeers writes it again.
	peers  map[PublicKey]Peer
	psk    cryptocore.Key
	routed map[netip.Addr]bool
}

// routeWriter is the part of *netlink.Handle that SetPeers uses.
type routeWriter interface {
	LinkByName(name string) (netlink.Link, error)
	RouteReplace(r *netlink.Route) error
	RouteDel(r *netlink.Route) error
}

// New creates the pod's tunnel in the namespace at nsPath, for a pod whose
// address is podIP, with a fresh key pair. The private key stays in this
// process. The tunnel has no peers until SetPeers.
func New(ctx context.Context, nsPath string, podIP netip.Addr, log *slog.Logger) (t *Tunnel, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t = &Tunnel{podIP: podIP, log: log, peers: map[PublicKey]Peer{}, routed: map[netip.Addr]bool{}}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	if t.ns, err = netns.OpenPath(nsPath); err != nil {
		return nil, err
	}
	if t.nl, err = netlink.NewHandleAt(vnetns.NsHandle(t.ns.Fd())); err != nil {
		return nil, fmt.Errorf("netlink in pod: %w", err)
	}
	uplinkMTU, err := t.uplinkMTU()
	if err != nil {
		return nil, err
	}
	t.mtu = uplinkMTU - Overhead

	// A device left by an agent that died is gone with its process (a TUN
	// interface lives as long as its file descriptor); one left by a
	// process still running would make TUNSETIFF attach to it, so refuse.
	if _, err := t.nl.LinkByName(DeviceName); err == nil {
		return nil, fmt.Errorf("%s already exists in the pod: is another agent serving it?", DeviceName)
	}

	var tdev tun.Device
	err = t.ns.Do(func() error {
		var err error
		tdev, err = tun.CreateTUN(DeviceName, t.mtu)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create %s in pod: %w (is /dev/net/tun present?)", DeviceName, err)
	}

	sk, pub, err := newPrivateKey()
	if err != nil {
		tdev.Close()
		return nil, err
	}
	defer sk.zero()
	t.pub = pub
	t.dev = device.NewDevice(&nsTUN{Device: tdev, ns: t.ns}, &nsBind{Bind: conn.NewStdNetBind(), ns: t.ns}, wgLogger(log))
	t.uapi, t.rt = t.dev, t.nl
	cfg := newWipeBuf(128)
	cfg.key("private_key", (*[KeySize]byte)(&sk))
	cfg.line("listen_port", strconv.Itoa(ListenPort))
	cfg.line("fwmark", strconv.Itoa(FwMark))
	if err := ipcSet(t.dev, cfg); err != nil {
		return nil, fmt.Errorf("configure WireGuard: %w", err)
	}
	if err := t.dev.Up(); err != nil {
		return nil, fmt.Errorf("start WireGuard: %w", err)
	}
	if err := t.setupRouting(); err != nil {
		return nil, err
	}
	log.Info("tunnel up", "pod_ip", podIP, "public_key", pub.Short(), "mtu", t.mtu)
	return t, nil
}

// PublicKey is the pod's public key, to publish in the registry.
func (t *Tunnel) PublicKey() PublicKey { return t.pub }

// MTU is the tunnel interface's MTU.
func (t *Tunnel) MTU() int { return t.mtu }

// uplinkMTU is the MTU of the interface holding the pod's default route.
func (t *Tunnel) uplinkMTU() (int, error) {
	routes, err := t.nl.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("read pod routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			l, err := t.nl.LinkByIndex(r.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("pod uplink: %w", err)
			}
			return l.Attrs().MTU, nil
		}
	}
	return 0, errors.New("the pod has no default route: cannot tell its uplink MTU")
}

func (t *Tunnel) setupRouting() error {
	l, err := t.nl.LinkByName(DeviceName)
	if err != nil {
		return fmt.Errorf("find %s: %w", DeviceName, err)
	}
	if err := t.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", DeviceName, err)
	}
	rule := netlink.NewRule()
	rule.Family = unix.AF_INET
	rule.Table = RouteTable
	rule.Mark = FwMark
	rule.Mask = ptr(uint32(0xffffffff))
	rule.Invert = true
	rule.Priority = RulePriority
	// The rule outlives the device (a restarted agent finds it): adding it
	// again is not an error.
	if err := t.nl.RuleAdd(rule); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add routing rule: %w", err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// SetPeers makes the tunnel's peers exactly peers, with psk as the
// pre-shared key of every one (psk may be nil when peers is empty; SetPeers
// keeps its own copy). Only what changed is touched: a peer whose key,
// address and endpoint are unchanged keeps its session, so one pod coming
// or going does not disturb other flows. A pod that came back with a new key
// under the same address is a new peer; its old key is removed in the same
// step, so the old key is rejected from then on.
//
// Routes are compared with those known to be written, not with the peers:
// if a route write fails, the error is returned and the next call (the
// agent's next round) writes it again.
func (t *Tunnel) SetPeers(peers []Peer, psk *cryptocore.Key) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.uapi == nil {
		return errors.New("tunnel is closed")
	}
	var zero cryptocore.Key
	if psk == nil {
		if len(peers) > 0 {
			return errors.New("BUG: tunnel peers without a pre-shared key")
		}
		psk = &zero
	}
	pskChanged := !t.psk.Equal(psk)
	want := map[PublicKey]Peer{}
	for _, p := range peers {
		want[p.PublicKey] = p
	}

	cfg := newWipeBuf(64 + 256*len(peers))
	changed := 0
	for k, old := range t.peers {
		if p, ok := want[k]; !ok || p.IP != old.IP {
			cfg.key("public_key", (*[KeySize]byte)(&k))
			cfg.line("remove", "true")
			changed++
		}
	}
	for k, p := range want {
		old, had := t.peers[k]
		if had && old == p && !pskChanged {
			continue
		}
		cfg.key("public_key", (*[KeySize]byte)(&k))
		cfg.key("preshared_key", (*[KeySize]byte)(psk))
		cfg.line("endpoint", p.Endpoint.String())
		cfg.line("replace_allowed_ips", "true")
		cfg.line("allowed_ip", netip.PrefixFrom(p.IP, 32).String())
		changed++
	}
	if changed > 0 {
		if err := ipcSet(t.uapi, cfg); err != nil {
			return fmt.Errorf("configure WireGuard peers: %w", err)
		}
		t.peers = want
		t.psk = *psk
	}
	if err := t.syncRoutesLocked(); err != nil {
		return err
	}
	if changed > 0 {
		t.log.Debug("tunnel peers updated", "pod_ip", t.podIP, "peers", len(want), "changes", changed, "psk_changed", pskChanged)
	}
	return nil
}

// syncRoutesLocked makes RouteTable hold a /32 for every peer address and
// nothing else, writing only the difference with what is known to be there.
func (t *Tunnel) syncRoutesLocked() error {
	want := map[netip.Addr]bool{}
	for _, p := range t.peers {
		want[p.IP] = true
	}
	var del, add []netip.Addr
	for ip := range t.routed {
		if !want[ip] {
			del = append(del, ip)
		}
	}
	for ip := range want {
		if !t.routed[ip] {
			add = append(add, ip)
		}
	}
	if len(del) == 0 && len(add) == 0 {
		return nil
	}
	tl, err := t.rt.LinkByName(DeviceName)
	if err != nil {
		return fmt.Errorf("find %s: %w", DeviceName, err)
	}
	var errs []error
	for _, ip := range del {
		if err := t.rt.RouteDel(t.route(tl, ip)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route to %s: %w", ip, err))
			continue
		}
		delete(t.routed, ip)
	}
	for _, ip := range add {
		if err := t.rt.RouteReplace(t.route(tl, ip)); err != nil {
			errs = append(errs, fmt.Errorf("route to %s: %w (retried next round)", ip, err))
			continue
		}
		t.routed[ip] = true
	}
	return errors.Join(errs...)
}

func (t *Tunnel) route(l netlink.Link, ip netip.Addr) *netlink.Route {
	return &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)},
		Src:       t.podIP.AsSlice(),
		Table:     RouteTable,
		Scope:     netlink.SCOPE_LINK,
	}
}

// Close stops the device; the kernel removes tenc0 and its routes with it.
// The routing rule and the pod's guard stay: with no tunnel, the tenant's
// traffic has nowhere to go but the guard, which drops it (fail closed).
func (t *Tunnel) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dev != nil {
		t.dev.Close()
		t.dev = nil
	}
	t.uapi, t.rt = nil, nil
	t.psk.Zero()
	if t.nl != nil {
		t.nl.Close()
		t.nl = nil
	}
	if t.ns != nil {
		t.ns.Close()
		t.ns = nil
	}
	return nil
}

func wgLogger(log *slog.Logger) *device.Logger {
	return &device.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...), "component", "wireguard")
			}
		},
		Errorf: func(format string, args ...any) {
			log.Warn(fmt.Sprintf(format, args...), "component", "wireguard")
		},
	}
}
