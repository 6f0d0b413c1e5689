// Package guard installs the fail-closed nftables guard, and the tenant's
// Service VIP translation, inside an enrolled pod's network namespace.
//
// The guard is one table, `table inet tencrypt-guard`, in the pod's
// namespace. It holds two sets (the tenant's peer pod IPs and Service VIPs),
// four named counters (one per drop reason) and three base chains:
//
//   - input (filter, priority raw): accept loopback, accept what arrives on
//     the tunnel interface, accept UDP to the WireGuard port from a peer when
//     the receiving socket carries the WireGuard fwmark; count and drop any
//     other packet whose source is a peer (plaintext or forged) or a VIP.
//   - egress (filter, hook postrouting, so it sees the interface a packet
//     really leaves by after the DNAT below re-routed it; on the output
//     hook every chain sees the interface chosen before the DNAT): accept
//     loopback, accept what leaves by the tunnel interface, accept the
//     WireGuard socket's own marked UDP; count and drop any other packet to
//     a peer or to a VIP that was not translated. If the agent dies and the
//     tunnel interface and its routes go with it, tenant traffic is dropped
//     here instead of leaving eth0 in plaintext.
//   - services (nat, hook output, priority -100, the dstnat slot): each
//     tenant VIP:port is DNATed to a backend pod IP:targetPort chosen by
//     `numgen random`, kube-proxy's semantics; conntrack keeps the choice for
//     the flow and un-NATs the replies. The DNAT happens before the output
//     route is final, so the packet then follows the backend's /32 route into
//     the tunnel (or loopback when the backend is the pod itself).
//
// The table is kernel state: it stays when the process that applied it (the
// nft child, then the agent) exits, so the guard outlives an agent crash.
// Apply must run before the tunnel and its routes are set up, and Remove only
// after they are gone, so no window opens where traffic passes unguarded.
//
// Only IPv4 is handled: the lab and the tenant registry are IPv4.
package guard

import (
	"errors"
	"net/netip"

	"github.com/tencrypt/tencrypt/transit/registry"
)

// Table is the name of the guard's nftables table (family inet) in each
// enrolled pod's namespace.
const Table = "tencrypt-guard"

// Counter names, one per drop reason. They are part of the contract with
// `nft list counters` readers (tencrypt status, metrics labels).
const (
	// CounterPlaintextIn counts packets from a tenant peer that did not come
	// through the tunnel (plaintext or forged with a peer's source address).
	CounterPlaintextIn = "plaintext-in"
	// CounterVIPIn counts packets whose source is a tenant Service VIP:
	// always forged, since replies from a VIP are un-NATed after the guard.
	CounterVIPIn = "vip-in"
	// CounterPlaintextOut counts packets to a tenant peer that would have
	// left outside the tunnel (the tunnel or its routes are missing).
	CounterPlaintextOut = "plaintext-out"
	// CounterVIPOut counts packets to a tenant VIP that were not translated:
	// a port the Service does not have, or a Service with no backends.
	CounterVIPOut = "vip-out"
)

// ErrInvalidConfig reports a Config that Apply refuses; nothing was changed.
var ErrInvalidConfig = errors.New("invalid guard configuration")

// ErrNotInstalled reports a namespace without the guard table.
var ErrNotInstalled = errors.New("guard not installed")

// Config is the whole guard of one pod. Apply replaces any previous Config.
type Config struct {
	// TunnelIf is the WireGuard TUN interface in the pod (e.g. "tenc0"). It
	// need not exist yet: rules match it by name.
	TunnelIf string
	// ListenPort is the WireGuard UDP port (e.g. 51820), the same in every pod.
	ListenPort uint16
	// FwMark is the mark the WireGuard socket sets with SO_MARK (e.g.
	// 0xca6c). Received and sent WireGuard UDP is accepted only on a socket
	// with this mark.
	FwMark uint32
	// Self is the pod's own address. It is never put in the peer set, even if
	// listed in Peers.
	Self netip.Addr
	// Peers are the tenant's other pod IPs.
	Peers []netip.Addr
	// Services are the tenant's Services (Tenant and Name are not used). A
	// VIP must not also be a peer. A Service with no Backends keeps its VIP
	// in the guard's set: packets to it are dropped and counted (vip-out),
	// never sent out in plaintext. A port's TargetPort 0 means the same as
	// its Port, as in Kubernetes.
	Services []registry.Service
}

// Counters are the guard's drop counters since the table was created. They
// survive Apply (a re-apply only refills rules and sets); Remove resets them.
type Counters struct {
	PlaintextInPackets, PlaintextInBytes   uint64
	VIPInPackets, VIPInBytes               uint64
	PlaintextOutPackets, PlaintextOutBytes uint64
	VIPOutPackets, VIPOutBytes             uint64
}
