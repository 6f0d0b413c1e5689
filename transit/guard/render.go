package guard

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tencrypt/tencrypt/transit/registry"
)

// ctMarkTenant is the conntrack mark bit of flows that are tenant traffic
// (to a peer, or to a VIP): such a flow may leave the pod only through the
// tunnel, even after its destination stopped being a peer.
const ctMarkTenant = 0x20000000

// Set names inside the table.
const (
	setPeers = "peers"
	setVIPs  = "vips"
)

// Priorities. Input filters before anything else in the pod (raw, -300).
// Egress is filtered on the postrouting hook, not output: the DNAT in the
// services chain re-routes the packet (to the backend, through the tunnel),
// but every later chain on the output hook still sees the interface chosen
// before the DNAT, and would drop a translated packet as leaving by eth0.
// Postrouting sees the final interface.
const (
	prioInput    = "raw"
	prioEgress   = "filter"
	prioServices = "-100" // "dstnat" is only accepted on prerouting
)

// plan is a validated, normalised Config: IPv4 only, sorted, no duplicates.
type plan struct {
	tunnelIf   string
	listenPort uint16
	fwMark     uint32
	peers      []netip.Addr
	services   []service
}

type service struct {
	vip      netip.Addr
	ports    []registry.Port
	backends []netip.Addr
}

// validate checks cfg and normalises it so that the rendered script depends
// only on the configuration's meaning, not on its order.
func validate(cfg Config) (plan, error) {
	p := plan{tunnelIf: cfg.TunnelIf, listenPort: cfg.ListenPort, fwMark: cfg.FwMark}
	if !validIfName(cfg.TunnelIf) {
		return p, fmt.Errorf("%w: tunnel interface %q: want 1 to 15 letters, digits, '-', '_' or '.'", ErrInvalidConfig, cfg.TunnelIf)
	}
	if cfg.ListenPort == 0 {
		return p, fmt.Errorf("%w: WireGuard listen port is 0: set the tunnel's UDP port (51820)", ErrInvalidConfig)
	}
	if cfg.FwMark == 0 {
		return p, fmt.Errorf("%w: fwmark is 0: set the mark the WireGuard socket uses (0xca6c)", ErrInvalidConfig)
	}
	self, err := ipv4("self address", cfg.Self)
	if err != nil {
		return p, err
	}
	for _, a := range cfg.Peers {
		a, err := ipv4("peer", a)
		if err != nil {
			return p, err
		}
		if a != self {
			p.peers = append(p.peers, a)
		}
	}
	p.peers = sortUnique(p.peers)

	vips := map[netip.Addr]bool{}
	for _, s := range cfg.Services {
		vip, err := ipv4("service VIP", s.VIP)
		if err != nil {
			return p, err
		}
		if vips[vip] {
			return p, fmt.Errorf("%w: service VIP %s listed twice: merge its ports into one Service", ErrInvalidConfig, vip)
		}
		vips[vip] = true
		if _, found := slices.BinarySearchFunc(p.peers, vip, netip.Addr.Compare); found || vip == self {
			return p, fmt.Errorf("%w: %s is both a service VIP and a pod address", ErrInvalidConfig, vip)
		}
		if len(s.Ports) == 0 {
			return p, fmt.Errorf("%w: service %s has no ports", ErrInvalidConfig, vip)
		}
		ns := service{vip: vip}
		seen := map[registry.Port]bool{}
		for _, pt := range s.Ports {
			if pt.Protocol != "tcp" && pt.Protocol != "udp" {
				return p, fmt.Errorf("%w: service %s: protocol %q: want tcp or udp", ErrInvalidConfig, vip, pt.Protocol)
			}
			if pt.Port == 0 {
				return p, fmt.Errorf("%w: service %s: port 0", ErrInvalidConfig, vip)
			}
			if pt.TargetPort == 0 {
				pt.TargetPort = pt.Port
			}
			key := registry.Port{Protocol: pt.Protocol, Port: pt.Port}
			if seen[key] {
				return p, fmt.Errorf("%w: service %s: %s port %d listed twice", ErrInvalidConfig, vip, pt.Protocol, pt.Port)
			}
			seen[key] = true
			ns.ports = append(ns.ports, pt)
		}
		slices.SortFunc(ns.ports, func(a, b registry.Port) int {
			return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
		})
		for _, b := range s.Backends {
			b, err := ipv4("backend of "+vip.String(), b)
			if err != nil {
				return p, err
			}
			ns.backends = append(ns.backends, b)
		}
		ns.backends = sortUnique(ns.backends)
		p.services = append(p.services, ns)
	}
	slices.SortFunc(p.services, func(a, b service) int { return a.vip.Compare(b.vip) })
	return p, nil
}

func ipv4(what string, a netip.Addr) (netip.Addr, error) {
	a = a.Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return a, fmt.Errorf("%w: %s %q: want a unicast IPv4 address", ErrInvalidConfig, what, a)
	}
	return a, nil
}

func sortUnique(as []netip.Addr) []netip.Addr {
	slices.SortFunc(as, netip.Addr.Compare)
	return slices.Compact(as)
}

// validIfName accepts Linux interface names that need no quoting in nft.
func validIfName(s string) bool {
	if len(s) == 0 || len(s) > 15 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// applyScript renders the transaction Apply runs. It keeps the table and its
// named counters, and replaces everything else, in one nft transaction:
//
//  1. declare the table, counters, sets and base chains (a no-op for each
//     that exists; counters keep their values);
//  2. flush every rule of the table, and the sets' elements;
//  3. add the sets' elements and the rules.
//
// The kernel commits the batch atomically: packets see the old guard or the
// new one, never none. A table left by an incompatible version (a base chain
// with another hook or priority) makes step 1 fail; Apply then falls back to
// replaceScript.
func applyScript(p plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", Table)
	declare(&b)
	b.WriteString("}\n")
	fmt.Fprintf(&b, "flush table inet %s\n", Table)
	fmt.Fprintf(&b, "flush set inet %s %s\n", Table, setPeers)
	fmt.Fprintf(&b, "flush set inet %s %s\n", Table, setVIPs)
	define(&b, p)
	return b.String()
}

// replaceScript deletes and recreates the whole table in one transaction
// (creating it first so the delete cannot fail). Still atomic, but the
// counters restart from zero.
func replaceScript(p plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s\ndelete table inet %s\n", Table, Table)
	define(&b, p)
	return b.String()
}

// removeScript deletes the table, and succeeds when there is none.
func removeScript() string {
	return fmt.Sprintf("table inet %s\ndelete table inet %s\n", Table, Table)
}

var counterNames = []string{CounterPlaintextIn, CounterVIPIn, CounterPlaintextOut, CounterVIPOut}

// declare writes the table's objects without contents.
func declare(b *strings.Builder) {
	for _, c := range counterNames {
		fmt.Fprintf(b, "\tcounter %s { }\n", c)
	}
	fmt.Fprintf(b, "\tset %s { type ipv4_addr; }\n", setPeers)
	fmt.Fprintf(b, "\tset %s { type ipv4_addr; }\n", setVIPs)
	fmt.Fprintf(b, "\tchain input { type filter hook input priority %s; policy accept; }\n", prioInput)
	fmt.Fprintf(b, "\tchain egress { type filter hook postrouting priority %s; policy accept; }\n", prioEgress)
	fmt.Fprintf(b, "\tchain services { type nat hook output priority %s; policy accept; }\n", prioServices)
}

// define writes the whole table with its contents.
func define(b *strings.Builder, p plan) {
	fmt.Fprintf(b, "table inet %s {\n", Table)
	for _, c := range counterNames {
		fmt.Fprintf(b, "\tcounter %s { }\n", c)
	}
	var vips []netip.Addr
	for _, s := range p.services {
		vips = append(vips, s.vip)
	}
	writeSet(b, setPeers, p.peers)
	writeSet(b, setVIPs, vips)

	fmt.Fprintf(b, "\tchain input {\n\t\ttype filter hook input priority %s; policy accept;\n", prioInput)
	// Loopback only carries what the pod sends itself (the kernel drops a
	// packet with a local source arriving on any other interface).
	b.WriteString("\t\tiif \"lo\" accept\n")
	fmt.Fprintf(b, "\t\tiifname %q accept\n", p.tunnelIf)
	// WireGuard authenticates its own packets; the socket mark keeps any
	// other socket that might bind the port (while the agent is down) from
	// receiving plaintext through this exception.
	fmt.Fprintf(b, "\t\tip saddr @%s udp dport %d socket mark %#x accept\n", setPeers, p.listenPort, p.fwMark)
	fmt.Fprintf(b, "\t\tip saddr @%s counter name %q drop\n", setPeers, CounterPlaintextIn)
	fmt.Fprintf(b, "\t\tip saddr @%s counter name %q drop\n", setVIPs, CounterVIPIn)
	b.WriteString("\t}\n")

	fmt.Fprintf(b, "\tchain egress {\n\t\ttype filter hook postrouting priority %s; policy accept;\n", prioEgress)
	// WireGuard's own packets first: they are the bulk of the traffic, and
	// need nothing else here.
	fmt.Fprintf(b, "\t\tmeta mark %#x udp sport %d accept\n", p.fwMark, p.listenPort)
	// A flow that starts toward a peer or a VIP is tenant traffic for good:
	// its conntrack entry is marked, and a marked flow may leave only by
	// the tunnel. When a peer leaves the tenant (deleted, re-addressed) its
	// address leaves @peers and its route goes, but open sockets keep
	// sending; without the mark their retransmits would go out eth0 in
	// clear. The same holds for a VIP translated to a backend outside the
	// tunnel. Marking the first packet of each flow is enough: the mark
	// stays with the connection.
	fmt.Fprintf(b, "\t\tct state new ip daddr @%s ct mark set ct mark | %#x\n", setPeers, ctMarkTenant)
	fmt.Fprintf(b, "\t\tct state new ct original ip daddr @%s ct mark set ct mark | %#x\n", setVIPs, ctMarkTenant)
	b.WriteString("\t\toif \"lo\" accept\n")
	fmt.Fprintf(b, "\t\toifname %q accept\n", p.tunnelIf)
	fmt.Fprintf(b, "\t\tip daddr @%s counter name %q drop\n", setPeers, CounterPlaintextOut)
	fmt.Fprintf(b, "\t\tip daddr @%s counter name %q drop\n", setVIPs, CounterVIPOut)
	fmt.Fprintf(b, "\t\tct mark & %#x == %#x counter name %q drop\n", ctMarkTenant, ctMarkTenant, CounterPlaintextOut)
	b.WriteString("\t}\n")

	fmt.Fprintf(b, "\tchain services {\n\t\ttype nat hook output priority %s; policy accept;\n", prioServices)
	for _, s := range p.services {
		if len(s.backends) == 0 {
			continue // left to the egress chain's vip-out drop
		}
		for _, pt := range s.ports {
			fmt.Fprintf(b, "\t\tip daddr %s %s dport %d dnat ip to ", s.vip, pt.Protocol, pt.Port)
			if len(s.backends) == 1 {
				fmt.Fprintf(b, "%s:%d\n", s.backends[0], pt.TargetPort)
				continue
			}
			// One rule per port with an anonymous map, rather than
			// kube-proxy's chain per Service and per endpoint: the table's
			// chains stay fixed, so a re-apply is a flush and refill that
			// keeps the counters, and never has to find stale chains.
			fmt.Fprintf(b, "numgen random mod %d map { ", len(s.backends))
			for i, be := range s.backends {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(b, "%d : %s . %d", i, be, pt.TargetPort)
			}
			b.WriteString(" }\n")
		}
	}
	b.WriteString("\t}\n}\n")
}

func writeSet(b *strings.Builder, name string, elems []netip.Addr) {
	fmt.Fprintf(b, "\tset %s {\n\t\ttype ipv4_addr;\n", name)
	if len(elems) > 0 {
		b.WriteString("\t\telements = { ")
		for i, e := range elems {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(e.String())
		}
		b.WriteString(" }\n")
	}
	b.WriteString("\t}\n")
}
