package lab

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/tencrypt/tencrypt/transit/registry"
)

// Plan is a topology with every name and address decided: what Up builds
// and what status reports. Plan is a pure function of the topology, so the
// same file always gives the same lab.
type Plan struct {
	Name string `json:"name"`
	// UnderlayNS is the namespace holding the switch that joins the nodes.
	UnderlayNS string `json:"underlay_netns"`
	// The three address ranges, from the topology.
	PodCIDR      netip.Prefix `json:"pod_cidr"`
	ServiceCIDR  netip.Prefix `json:"service_cidr"`
	UnderlayCIDR netip.Prefix `json:"underlay_cidr"`
	Nodes        []Node       `json:"nodes"`
	Pods         []Pod        `json:"pods"`
	// Services are ClusterIP Services: each VIP:Port is balanced over that
	// port's TargetPort on every pod of the tenant.
	Services []registry.Service `json:"services"`
}

// Node is a node namespace: a bridge for its pods (cni0), a link to the
// underlay (eth0) and a VXLAN device (vxlan0) routing to the other nodes.
type Node struct {
	Name  string `json:"name"`
	NetNS string `json:"netns"`
	// UnderlayIP is the node's address on the underlay switch, the VXLAN
	// tunnel endpoint.
	UnderlayIP netip.Addr `json:"underlay_ip"`
	// UnderlayPort is the node's port on the underlay switch.
	UnderlayPort string       `json:"underlay_port"`
	PodCIDR      netip.Prefix `json:"pod_cidr"`
	// Gateway is the bridge's address, the pods' default route.
	Gateway netip.Addr `json:"gateway"`
	// VTEPIP and VTEPMAC address the node's VXLAN device, as flannel does:
	// the .0 of its pod range and a MAC derived from its index.
	VTEPIP  netip.Addr `json:"vtep_ip"`
	VTEPMAC string     `json:"vtep_mac"`
}

// Pod is a pod namespace with one interface, eth0, whose peer is HostVeth
// on its node's bridge.
type Pod struct {
	Name     string     `json:"name"`
	Tenant   string     `json:"tenant"`
	Node     string     `json:"node"`
	NetNS    string     `json:"netns"`
	IP       netip.Addr `json:"ip"`
	Gateway  netip.Addr `json:"gateway"`
	HostVeth string     `json:"host_veth"`
}

const (
	// vxlanVNI and vxlanPort are those flannel uses by default.
	vxlanVNI  = 1
	vxlanPort = 4789
	// vxlanOverhead is what VXLAN adds to each packet on the underlay:
	// outer IPv4 20, UDP 8, VXLAN 8, inner Ethernet 14.
	vxlanOverhead = 50
	underlayMTU   = 1500
	// PodMTU leaves room for VXLAN, so a full-size pod packet crosses nodes
	// without fragmentation.
	PodMTU = underlayMTU - vxlanOverhead
)

// NamespacePrefix returns the prefix of every namespace of the named lab.
// The lab only ever creates or deletes namespaces with this prefix.
func NamespacePrefix(labName string) string { return "tl-" + labName + "-" }

// MakePlan assigns names and addresses: nodes first, then pods in the
// order of the file, then Service VIPs. The topology must have come from
// ParseTopology (or DefaultTopology), which validated it.
func MakePlan(t *Topology) (*Plan, error) {
	p := &Plan{
		Name:         t.Name,
		UnderlayNS:   NamespacePrefix(t.Name) + "underlay",
		PodCIDR:      netip.MustParsePrefix(t.PodCIDR),
		ServiceCIDR:  netip.MustParsePrefix(t.ServiceCIDR),
		UnderlayCIDR: netip.MustParsePrefix(t.UnderlayCIDR),
	}
	nodeIdx, err := p.planNodes(t)
	if err != nil {
		return nil, err
	}
	tenantPods := p.planPods(t, nodeIdx)
	if err := p.planServices(t, tenantPods); err != nil {
		return nil, err
	}
	return p, nil
}

// planNodes adds t's nodes to p and returns each node's index in p.Nodes.
func (p *Plan) planNodes(t *Topology) (map[string]int, error) {
	prefix := NamespacePrefix(t.Name)
	nodeIdx := map[string]int{}
	for i, n := range t.Nodes {
		// Node i (from 1) gets the i-th /24 of the pod range, and the i-th
		// host address of the underlay.
		cidr, err := nthSubnet(p.PodCIDR, 24, i+1)
		if err != nil {
			return nil, fmt.Errorf("node %q: pod range: %w", n.Name, err)
		}
		uip, err := nthAddr(p.UnderlayCIDR, i+1)
		if err != nil {
			return nil, fmt.Errorf("node %q: underlay address: %w", n.Name, err)
		}
		nodeIdx[n.Name] = i
		p.Nodes = append(p.Nodes, Node{
			Name:         n.Name,
			NetNS:        prefix + n.Name,
			UnderlayIP:   uip,
			UnderlayPort: fmt.Sprintf("n%d", i+1),
			PodCIDR:      cidr,
			Gateway:      cidr.Addr().Next(),
			VTEPIP:       cidr.Addr(),
			VTEPMAC:      fmt.Sprintf("02:74:6c:00:%02x:%02x", (i+1)>>8, (i+1)&0xff),
		})
	}
	return nodeIdx, nil
}

// planPods adds t's pods to p, each with the next address of its node's
// range after the gateway, and returns each tenant's pod addresses.
func (p *Plan) planPods(t *Topology, nodeIdx map[string]int) map[string][]netip.Addr {
	prefix := NamespacePrefix(t.Name)
	nextHost := map[string]netip.Addr{}
	for _, n := range p.Nodes {
		nextHost[n.Name] = n.Gateway.Next()
	}
	tenantPods := map[string][]netip.Addr{}
	for _, tn := range t.Tenants {
		for _, ps := range tn.Pods {
			node := p.Nodes[nodeIdx[ps.Node]]
			ip := nextHost[ps.Node]
			nextHost[ps.Node] = ip.Next()
			p.Pods = append(p.Pods, Pod{
				Name:     ps.Name,
				Tenant:   tn.Name,
				Node:     ps.Node,
				NetNS:    prefix + ps.Name,
				IP:       ip,
				Gateway:  node.Gateway,
				HostVeth: fmt.Sprintf("veth%d", len(p.Pods)),
			})
			tenantPods[tn.Name] = append(tenantPods[tn.Name], ip)
		}
	}
	return tenantPods
}

// planServices adds t's Services to p, balancing over tenantPods: the VIPs
// the file gives first (each once), then the free ones in order.
func (p *Plan) planServices(t *Topology, tenantPods map[string][]netip.Addr) error {
	taken := map[netip.Addr]string{}
	for _, tn := range t.Tenants {
		for _, s := range tn.Services {
			if s.VIP != "" {
				a := netip.MustParseAddr(s.VIP)
				if other, dup := taken[a]; dup {
					return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service %q: vip %s is already used by %s", s.Name, a, other)}
				}
				taken[a] = tn.Name + "/" + s.Name
			}
		}
	}
	// Automatic VIPs start at .10 of the range, as Kubernetes keeps the
	// first addresses for its own Services.
	svcRange := p.ServiceCIDR
	next := svcRange.Addr()
	for range 10 {
		next = next.Next()
	}
	for _, tn := range t.Tenants {
		for _, s := range tn.Services {
			var vip netip.Addr
			if s.VIP != "" {
				vip = netip.MustParseAddr(s.VIP)
			} else {
				for taken[next] != "" {
					next = next.Next()
				}
				if !svcRange.Contains(next) {
					return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service %q: serviceCIDR %s is full", s.Name, svcRange)}
				}
				vip = next
				taken[vip] = tn.Name + "/" + s.Name
			}
			svc := registry.Service{Name: s.Name, Tenant: tn.Name, VIP: vip, Backends: tenantPods[tn.Name]}
			for _, sp := range s.Ports {
				svc.Ports = append(svc.Ports, registry.Port{Protocol: sp.Protocol, Port: sp.Port, TargetPort: sp.TargetPort})
			}
			p.Services = append(p.Services, svc)
		}
	}
	return nil
}

// Namespaces lists every namespace the plan creates, underlay first.
func (p *Plan) Namespaces() []string {
	ns := []string{p.UnderlayNS}
	for _, n := range p.Nodes {
		ns = append(ns, n.NetNS)
	}
	for _, pod := range p.Pods {
		ns = append(ns, pod.NetNS)
	}
	return ns
}

// Node returns the named node.
func (p *Plan) Node(name string) (Node, bool) {
	for _, n := range p.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// Pod returns the named pod.
func (p *Plan) Pod(name string) (Pod, bool) {
	for _, pod := range p.Pods {
		if pod.Name == name {
			return pod, true
		}
	}
	return Pod{}, false
}

// nthSubnet returns the n-th subnet of size bits inside p.
func nthSubnet(p netip.Prefix, bits, n int) (netip.Prefix, error) {
	if bits < p.Bits() || bits-p.Bits() >= 31 || n >= 1<<(bits-p.Bits()) {
		return netip.Prefix{}, fmt.Errorf("%s has no room for /%d number %d", p, bits, n)
	}
	return netip.PrefixFrom(addOffset(p.Addr(), uint32(n)<<(32-bits)), bits), nil
}

// nthAddr returns the n-th address of p, refusing the broadcast address.
func nthAddr(p netip.Prefix, n int) (netip.Addr, error) {
	if n >= 1<<(32-p.Bits())-1 {
		return netip.Addr{}, fmt.Errorf("%s has no host number %d", p, n)
	}
	return addOffset(p.Addr(), uint32(n)), nil
}

func addOffset(a netip.Addr, off uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(a.AsSlice())+off)
	return netip.AddrFrom4(b)
}
