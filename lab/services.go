package lab

import (
	"fmt"
	"strings"

	"github.com/tencrypt/tencrypt/transit/registry"
)

// natTable is the nftables table the lab puts in every node namespace.
const natTable = "tencrypt-lab"

// masqMark marks connections a pod makes to its own Service through the
// VIP (hairpin), which must be masqueraded or the pod would receive a packet
// from its own address and drop it as a martian. kube-proxy uses the same bit.
const masqMark = 0x4000

// serviceRules renders the node's Service translation as an nft script, in
// the shape kube-proxy's nftables mode uses: a dispatch chain matching VIPs,
// one chain per Service choosing an endpoint at random, one chain per
// endpoint doing the DNAT. Every node gets the same rules, so a pod reaches
// any VIP through its own node. Replies are un-NATed by conntrack; for
// replies that are bridged rather than routed (client and backend on the same
// node) this relies on br_netfilter passing bridged IPv4 through these hooks.
//
// The script deletes and recreates the table in one transaction, so applying
// it twice gives the same ruleset.
func serviceRules(p *Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s\ndelete table ip %s\n", natTable, natTable)
	fmt.Fprintf(&b, "table ip %s {\n", natTable)
	b.WriteString("\tchain services {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n")
	for _, s := range p.Services {
		for _, sp := range s.Ports {
			fmt.Fprintf(&b, "\t\tip daddr %s %s dport %d jump %s\n", s.VIP, sp.Protocol, sp.Port, portChain(s, sp))
		}
	}
	b.WriteString("\t}\n")
	for _, s := range p.Services {
		for _, sp := range s.Ports {
			c := portChain(s, sp)
			fmt.Fprintf(&b, "\tchain %s {\n\t\tnumgen random mod %d vmap { ", c, len(s.Backends))
			for i := range s.Backends {
				if i > 0 {
					b.WriteString(", ")
				}
				fmt.Fprintf(&b, "%d : goto %s-%d", i, c, i)
			}
			b.WriteString(" }\n\t}\n")
			for i, be := range s.Backends {
				fmt.Fprintf(&b, "\tchain %s-%d {\n", c, i)
				fmt.Fprintf(&b, "\t\tip saddr %s meta mark set meta mark | %#x\n", be, masqMark)
				fmt.Fprintf(&b, "\t\tmeta l4proto %s dnat to %s:%d\n", sp.Protocol, be, sp.TargetPort)
				b.WriteString("\t}\n")
			}
		}
	}
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	fmt.Fprintf(&b, "\t\tmeta mark & %#x == %#x masquerade\n\t}\n}\n", masqMark, masqMark)
	return b.String()
}

// portChain names the chain of one Service port, e.g. svc-blue-web-tcp80.
func portChain(s registry.Service, sp registry.Port) string {
	return fmt.Sprintf("svc-%s-%s-%s%d", s.Tenant, s.Name, sp.Protocol, sp.Port)
}
