package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/transit/guard"
	"github.com/tencrypt/tencrypt/transit/registry"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

func snapshot() *registry.Snapshot {
	ip := netip.MustParseAddr
	return &registry.Snapshot{
		Pods: []registry.Pod{
			{Name: "b1", Tenant: "blue", Node: "n1", IP: ip("10.0.1.2")},
			{Name: "b2", Tenant: "blue", Node: "n2", IP: ip("10.0.2.2")},
			{Name: "b3", Tenant: "blue", Node: "n2", IP: ip("10.0.2.3")},
			{Name: "r1", Tenant: "red", Node: "n1", IP: ip("10.0.1.3")},
		},
		Services: []registry.Service{
			{Tenant: "blue", Name: "web", VIP: ip("10.96.0.10"), Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 8080}},
				Backends: []netip.Addr{ip("10.0.1.2"), ip("10.0.2.2"), ip("10.0.2.3")}},
			{Tenant: "red", Name: "web", VIP: ip("10.96.0.20"), Ports: []registry.Port{{Protocol: "udp", Port: 53}},
				Backends: []netip.Addr{ip("10.0.1.3")}},
		},
		Keys: map[string]registry.PodKey{
			// b2 published a key; b3 has not yet.
			"b2": {Pod: "b2", PublicKey: tunnel.PublicKey{1}.String(), Endpoint: netip.MustParseAddrPort("10.0.2.2:51820")},
			"r1": {Pod: "r1", PublicKey: tunnel.PublicKey{2}.String(), Endpoint: netip.MustParseAddrPort("10.0.1.3:51820")},
		},
	}
}

func TestGuardConfigCoversTheWholeTenantOnly(t *testing.T) {
	snap := snapshot()
	c := guardConfig(snap.Pods[0], snap)
	// Every other blue pod is guarded against, published key or not; red's
	// pod and red's VIP are left alone.
	want := []netip.Addr{netip.MustParseAddr("10.0.2.2"), netip.MustParseAddr("10.0.2.3")}
	if !slices.Equal(c.Peers, want) {
		t.Errorf("peers %v, want %v", c.Peers, want)
	}
	if len(c.Services) != 1 || c.Services[0].VIP != netip.MustParseAddr("10.96.0.10") || len(c.Services[0].Backends) != 3 {
		t.Errorf("services %+v, want blue's VIP with 3 backends", c.Services)
	}
	if c.Self != snap.Pods[0].IP || c.TunnelIf != tunnel.DeviceName || c.ListenPort != tunnel.ListenPort || c.FwMark != tunnel.FwMark {
		t.Errorf("config %+v does not match the tunnel's constants", c)
	}
	snap.Services[0].Backends = append(snap.Services[0].Backends, netip.MustParseAddr("10.0.9.9"), snap.Pods[3].IP)
	if got := guardConfig(snap.Pods[0], snap).Services[0].Backends; len(got) != 3 {
		t.Errorf("backends %v: want only the tenant's 3 pods (a stranger and a red pod dropped)", got)
	}
	snap.Services[0].Backends = snap.Services[0].Backends[:3]
	if !guardEqual(c, guardConfig(snap.Pods[0], snap)) {
		t.Error("the same snapshot gave two different guards")
	}
	snap.Services[0].Backends = snap.Services[0].Backends[:2]
	if guardEqual(c, guardConfig(snap.Pods[0], snap)) {
		t.Error("a backend change left the guard equal")
	}
}

func TestPeerListOnlyPublishedPodsOfTheTenant(t *testing.T) {
	snap := snapshot()
	peers := peerList(snap.Pods[0], snap)
	if len(peers) != 1 || peers[0].IP != netip.MustParseAddr("10.0.2.2") || peers[0].PublicKey != (tunnel.PublicKey{1}) {
		t.Errorf("peers of b1: %+v, want only b2 (b3 has no key, r1 is red)", peers)
	}
	snap.Keys["b3"] = registry.PodKey{Pod: "b3", PublicKey: "not base64"}
	if got := peerList(snap.Pods[0], snap); len(got) != 1 {
		t.Errorf("a malformed published key became a peer: %+v", got)
	}
}

func TestGuardEqualComparesEveryField(t *testing.T) {
	base := guardConfig(snapshot().Pods[0], snapshot())
	mutations := map[string]func(*guard.Config){
		"tunnel":   func(c *guard.Config) { c.TunnelIf = "x" },
		"port":     func(c *guard.Config) { c.ListenPort++ },
		"mark":     func(c *guard.Config) { c.FwMark++ },
		"self":     func(c *guard.Config) { c.Self = netip.MustParseAddr("10.9.9.9") },
		"peers":    func(c *guard.Config) { c.Peers = c.Peers[:1] },
		"vip":      func(c *guard.Config) { c.Services[0].VIP = netip.MustParseAddr("10.96.0.99") },
		"ports":    func(c *guard.Config) { c.Services[0].Ports = nil },
		"services": func(c *guard.Config) { c.Services = nil },
	}
	for name, mutate := range mutations {
		c := guardConfig(snapshot().Pods[0], snapshot())
		mutate(&c)
		if guardEqual(base, c) {
			t.Errorf("changing %s left the guard equal", name)
		}
	}
}

func TestMeshProblems(t *testing.T) {
	k := func(b byte) tunnel.PublicKey { return tunnel.PublicKey{b} }
	peer := func(b byte) tunnel.PeerStats { return tunnel.PeerStats{PublicKey: k(b)} }
	node1 := Status{Pods: []PodStatus{
		{Pod: "a", Tenant: "blue", PublicKey: k(1).String(), Ready: true, ExpectedPeers: 1, Peers: []tunnel.PeerStats{peer(2)}},
		{Pod: "r", Tenant: "red", PublicKey: k(9).String(), Ready: true},
	}}
	node2 := Status{Pods: []PodStatus{
		{Pod: "b", Tenant: "blue", PublicKey: k(2).String(), Ready: true, ExpectedPeers: 1, Peers: []tunnel.PeerStats{peer(1)}},
	}}
	if p := MeshProblems([]Status{node1, node2}); p != nil {
		t.Errorf("complete mesh: %v", p)
	}
	// a restarted with a new key; b still has the old one.
	node1.Pods[0].PublicKey = k(3).String()
	if p := MeshProblems([]Status{node1, node2}); len(p) != 1 || p[0] != "pod b does not know a's current key yet" {
		t.Errorf("stale key: %v", p)
	}
	node2.Pods[0].Ready = false
	if p := MeshProblems([]Status{node2}); len(p) != 1 {
		t.Errorf("pod not ready: %v", p)
	}
}

// emptyRegistry lists nothing at all, as a lost registry file would.
type emptyRegistry struct{ registry.Registry }

func (emptyRegistry) Snapshot(context.Context) (*registry.Snapshot, error) {
	return &registry.Snapshot{}, nil
}

func TestEmptyRegistryDoesNotUnguardServedPods(t *testing.T) {
	a := New(Config{Node: "n1", Registry: emptyRegistry{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	a.pods["b1"] = &servedPod{pod: snapshot().Pods[0]}
	if err := a.Reconcile(t.Context()); err == nil || !strings.Contains(err.Error(), "no enrolled tenant") {
		t.Errorf("Reconcile = %v, want a refusal", err)
	}
	if _, ok := a.pods["b1"]; !ok {
		t.Error("the pod was unserved (its guard would have been removed)")
	}
}
