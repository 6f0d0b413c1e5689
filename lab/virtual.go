package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tencrypt/tencrypt/transit/registry"
	"github.com/tencrypt/tencrypt/transit/tunnel"
)

// Virtual pods let one machine present a large tenant to real agents: they
// are registry entries for pods on nodes that do not exist, with published
// public keys whose private halves were thrown away. Agents configure them
// as peers and guard against them like any other pod; nothing ever answers
// at their addresses, which lie in the pod range beyond the real nodes'.

// VirtualNodePrefix starts the name of every virtual node.
const VirtualNodePrefix = "virtual-"

// MaxVirtualPerNode is how many virtual pods fit on one virtual node's /24
// (.0 and .1 are the node's VTEP and gateway, as on real nodes; .255 is
// broadcast).
const MaxVirtualPerNode = 253

// SetVirtualPods replaces the tenant's virtual pods with count new ones,
// perNode on each virtual node, and publishes a fresh public key for each.
// count 0 removes them. The tenant must have a real pod in the lab (its
// range is the lab's pod range).
func (r *Registry) SetVirtualPods(_ context.Context, tenant string, count, perNode int) error {
	if count < 0 || perNode < 1 || perNode > MaxVirtualPerNode {
		return fmt.Errorf("virtual pods: want count >= 0 and 1 <= per-node <= %d, got %d and %d", MaxVirtualPerNode, count, perNode)
	}
	st, err := r.m.readState(r.lab)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(st.Plan.Pods, func(p Pod) bool { return p.Tenant == tenant }) {
		return fmt.Errorf("virtual pods: lab %q has no pod of tenant %q", r.lab, tenant)
	}
	pods, err := virtualPods(st.Plan, tenant, count, perNode)
	if err != nil {
		return err
	}
	// Keys first, outside the lock: key generation is the slow part.
	keys := make([]registry.PodKey, len(pods))
	now := time.Now().UTC()
	for i, p := range pods {
		pub, err := tunnel.NewPublicKey()
		if err != nil {
			return err
		}
		keys[i] = registry.PodKey{Pod: p.Name, PublicKey: pub.String(), Endpoint: netip.AddrPortFrom(p.IP, tunnel.ListenPort),
			Node: p.Node, Published: now}
	}
	return r.update(func(ts *transitState) error {
		ts.Virtual = slices.DeleteFunc(ts.Virtual, func(p registry.Pod) bool {
			if p.Tenant == tenant {
				delete(ts.Keys, p.Name)
				return true
			}
			return false
		})
		ts.Virtual = append(ts.Virtual, pods...)
		for _, k := range keys {
			ts.Keys[k.Pod] = k
		}
		return nil
	})
}

// virtualPods plans count pods of tenant on virtual nodes numbered after
// the lab's real ones (node i of the lab has the i-th /24 of the pod range).
// A tenant's virtual pods share their nodes with no other tenant's, so the
// tenants' virtual nodes are numbered apart: tenant at index t in the
// plan's tenant order starts at node 1 + len(nodes) + 64*t.
func virtualPods(plan *Plan, tenant string, count, perNode int) ([]registry.Pod, error) {
	var tenants []string
	for _, p := range plan.Pods {
		if !slices.Contains(tenants, p.Tenant) {
			tenants = append(tenants, p.Tenant)
		}
	}
	first := 1 + len(plan.Nodes) + 64*slices.Index(tenants, tenant)
	nodes := (count + perNode - 1) / perNode
	if nodes > 64 {
		return nil, fmt.Errorf("virtual pods: %d pods at %d per node need %d virtual nodes; at most 64 per tenant", count, perNode, nodes)
	}
	var out []registry.Pod
	for n := 0; n < nodes; n++ {
		subnet, err := nthSubnet(plan.PodCIDR, 24, first+n)
		if err != nil {
			return nil, fmt.Errorf("virtual pods: %w", err)
		}
		node := fmt.Sprintf("%s%d", VirtualNodePrefix, first+n)
		for j := 0; j < perNode && len(out) < count; j++ {
			ip, err := nthAddr(subnet, 2+j)
			if err != nil {
				return nil, fmt.Errorf("virtual pods: %w", err)
			}
			out = append(out, registry.Pod{Name: fmt.Sprintf("%s-v%d-%d", tenant, first+n, j), Tenant: tenant, Node: node, IP: ip})
		}
	}
	for _, p := range plan.Pods {
		if strings.HasPrefix(p.Node, VirtualNodePrefix) || slices.ContainsFunc(out, func(v registry.Pod) bool { return v.IP == p.IP }) {
			return nil, fmt.Errorf("virtual pods: lab %q already uses node %s or address %s", plan.Name, p.Node, p.IP)
		}
	}
	return out, nil
}
