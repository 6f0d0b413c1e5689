package lab

import (
	"net/netip"
	"testing"
)

// Virtual pods get distinct addresses in the pod range, outside every real
// node's /24, on nodes that do not exist, perNode to a node.
func TestVirtualPodsPlan(t *testing.T) {
	plan, err := MakePlan(DefaultTopology())
	if err != nil {
		t.Fatal(err)
	}
	pods, err := virtualPods(plan, "blue", 300, 110)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 300 {
		t.Fatalf("got %d pods, want 300", len(pods))
	}
	seen := map[netip.Addr]bool{}
	perNode := map[string]int{}
	for _, p := range pods {
		if seen[p.IP] || !plan.PodCIDR.Contains(p.IP) || p.Tenant != "blue" || p.NetNS != "" {
			t.Fatalf("bad virtual pod %+v", p)
		}
		seen[p.IP] = true
		perNode[p.Node]++
		for _, n := range plan.Nodes {
			if n.PodCIDR.Contains(p.IP) || n.Name == p.Node {
				t.Fatalf("virtual pod %+v is on real node %s", p, n.Name)
			}
		}
	}
	if len(perNode) != 3 {
		t.Fatalf("300 pods at 110 a node on %d nodes, want 3: %v", len(perNode), perNode)
	}
	red, err := virtualPods(plan, "red", 10, 110)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range red {
		if seen[p.IP] {
			t.Fatalf("red's virtual pod %+v shares blue's address", p)
		}
	}
	if _, err := virtualPods(plan, "blue", 64*110+1, 110); err == nil {
		t.Fatal("more virtual nodes than a tenant's share was accepted")
	}
}
