package lab

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestDefaultTopologyPlan(t *testing.T) {
	p, err := MakePlan(DefaultTopology())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Nodes) != 2 || len(p.Pods) != 6 || len(p.Services) != 2 {
		t.Fatalf("default lab has %d nodes, %d pods, %d services; want 2, 6, 2", len(p.Nodes), len(p.Pods), len(p.Services))
	}
	want := map[string]string{
		"blue-1a": "10.244.1.2", "blue-1b": "10.244.1.3", "blue-2a": "10.244.2.2",
		"blue-2b": "10.244.2.3", "red-1a": "10.244.1.4", "red-2a": "10.244.2.4",
	}
	for _, pod := range p.Pods {
		if pod.IP.String() != want[pod.Name] {
			t.Errorf("pod %s has IP %s, want %s", pod.Name, pod.IP, want[pod.Name])
		}
		node, _ := p.Node(pod.Node)
		if !node.PodCIDR.Contains(pod.IP) || pod.Gateway != node.Gateway {
			t.Errorf("pod %s (%s via %s) is not in node %s's range %s via %s", pod.Name, pod.IP, pod.Gateway, node.Name, node.PodCIDR, node.Gateway)
		}
		if !strings.HasPrefix(pod.NetNS, NamespacePrefix("lab")) {
			t.Errorf("pod %s namespace %q lacks the lab prefix", pod.Name, pod.NetNS)
		}
	}
	blue := p.Services[0]
	if blue.Tenant != "blue" || blue.VIP != netip.MustParseAddr("10.96.0.10") || len(blue.Backends) != 4 {
		t.Errorf("blue service = %+v, want VIP 10.96.0.10 over 4 backends", blue)
	}
	if p.Nodes[1].UnderlayIP != netip.MustParseAddr("10.200.0.2") || p.Nodes[1].VTEPIP != netip.MustParseAddr("10.244.2.0") {
		t.Errorf("node2 = %+v", p.Nodes[1])
	}
	if len(p.Namespaces()) != 1+2+6 {
		t.Errorf("namespaces = %v", p.Namespaces())
	}
}

func TestPlanAssignsVIPsAroundExplicitOnes(t *testing.T) {
	topo, err := ParseTopology("t.yaml", []byte(`
nodes: [{name: n1}]
tenants:
  - name: a
    pods: [{name: a1, node: n1}]
    services:
      - {name: s1, ports: [{port: 80}]}
      - {name: s2, ports: [{port: 81}], vip: 10.96.0.11}
      - {name: s3, ports: [{port: 82, protocol: udp}, {port: 82, targetPort: 8082}]}
`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := MakePlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{}
	for _, s := range p.Services {
		for _, sp := range s.Ports {
			got = append(got, fmt.Sprintf("%s:%d/%s->%d", s.VIP, sp.Port, sp.Protocol, sp.TargetPort))
		}
	}
	want := "10.96.0.10:80/tcp->80 10.96.0.11:81/tcp->81 10.96.0.12:82/udp->82 10.96.0.12:82/tcp->8082"
	if strings.Join(got, " ") != want {
		t.Errorf("VIPs = %v, want %s", got, want)
	}
}

func TestTopologyErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // "file:line: message" prefix or substring
	}{
		{"empty", ``, "t.yaml: file is empty"},
		{"not yaml", "nodes: [", "t.yaml:1: did not find expected node content"},
		{"unknown top field", "nodez: []\n", `t.yaml:1: unknown field "nodez"`},
		{"unknown pod field", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods:\n      - {name: a1, nod: n1}\n", `t.yaml:5: unknown field "nod"`},
		{"no nodes", "name: x\n", "t.yaml: no nodes"},
		{"bad lab name", "name: Big\nnodes: [{name: n1}]\n", `name "Big"`},
		{"undefined node", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods:\n      - {name: a1, node: n2}\n", `t.yaml:5: pod "a1": node "n2" is not defined (nodes: n1)`},
		{"duplicate pod", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods:\n      - {name: a1, node: n1}\n      - {name: a1, node: n1}\n", `t.yaml:6: pod name "a1" is already used on line 5`},
		{"pod named like node", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods:\n      - {name: n1, node: n1}\n", `t.yaml:5: pod name "n1" is already used on line 1`},
		{"bad pod name", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods:\n      - {name: A_1, node: n1}\n", `t.yaml:5: pod name "A_1"`},
		{"duplicate tenant", "nodes: [{name: n1}]\ntenants:\n  - name: a\n  - name: a\n", `t.yaml:4: tenant "a" is defined twice (first on line 3)`},
		{"bad protocol", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s, ports: [{port: 1, protocol: sctp}]}\n", `t.yaml:6: service "s": protocol "sctp"`},
		{"missing port", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s, ports: [{protocol: udp}]}\n", `t.yaml:6: service "s": port is missing`},
		{"port out of range", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s, ports: [{port: 70000}]}\n", "t.yaml:6: cannot unmarshal !!int `70000` into uint16"},
		{"service without pods", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    services:\n      - {name: s, ports: [{port: 80}]}\n", `t.yaml:5: service "s": tenant "a" has no pods`},
		{"vip outside range", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s, ports: [{port: 80}], vip: 10.0.0.1}\n", `t.yaml:6: service "s": vip "10.0.0.1" is not an address in serviceCIDR`},
		{"no ports", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s}\n", `t.yaml:6: service "s": no ports`},
		{"duplicate port", "nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - name: s\n        ports:\n          - {port: 80}\n          - {port: 80, protocol: tcp}\n", `t.yaml:9: service "s": port 80/tcp is listed twice (first on line 8)`},
		{"overlapping ranges", "podCIDR: 10.96.0.0/12\nnodes: [{name: n1}]\n", "networks 10.96.0.0/12 and 10.96.0.0/16 overlap"},
		{"bad cidr", "podCIDR: 10.244.0.1/16\nnodes: [{name: n1}]\n", `podCIDR "10.244.0.1/16": want an IPv4 network`},
		{"pod range too small", "podCIDR: 10.244.0.0/24\nnodes: [{name: n1}]\n", `podCIDR "10.244.0.0/24": too small`},
		{"nodes not a list", "nodes: {name: n1}\n", "t.yaml:1: cannot unmarshal !!map into []lab.NodeSpec"},
		{"node not a mapping", "nodes: [n1]\n", `t.yaml:1: expected a mapping (key: value), found "n1"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTopology("t.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDuplicateVIP(t *testing.T) {
	topo, err := ParseTopology("t.yaml", []byte("nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s, ports: [{port: 80}], vip: 10.96.0.5}\n      - {name: s2, ports: [{port: 80}], vip: 10.96.0.5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = MakePlan(topo)
	if err == nil || !strings.Contains(err.Error(), `topology:7: service "s2": vip 10.96.0.5 is already used by a/s`) {
		t.Errorf("err = %v", err)
	}
}

func TestServiceRulesShape(t *testing.T) {
	p, err := MakePlan(DefaultTopology())
	if err != nil {
		t.Fatal(err)
	}
	r := serviceRules(p)
	for _, want := range []string{
		"ip daddr 10.96.0.10 tcp dport 80 jump svc-blue-web-tcp80",
		"ip daddr 10.96.0.20 udp dport 80 jump svc-red-web-udp80",
		"numgen random mod 4 vmap { 0 : goto svc-blue-web-tcp80-0, 1 : goto svc-blue-web-tcp80-1, 2 : goto svc-blue-web-tcp80-2, 3 : goto svc-blue-web-tcp80-3 }",
		"meta l4proto tcp dnat to 10.244.2.3:8080",
		"meta l4proto udp dnat to 10.244.2.4:8080",
		"ip saddr 10.244.1.4 meta mark set meta mark | 0x4000",
		"meta mark & 0x4000 == 0x4000 masquerade",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("rules lack %q:\n%s", want, r)
		}
	}
}

func FuzzParseTopology(f *testing.F) {
	f.Add(defaultTopology)
	f.Add([]byte("nodes: [{name: n1}]\ntenants:\n  - name: a\n    pods: [{name: a1, node: n1}]\n    services:\n      - {name: s, ports: [{port: 80}]}\n"))
	f.Add([]byte("name: x\nnodes: [n1]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		topo, err := ParseTopology("f.yaml", data)
		if err != nil {
			return
		}
		// A topology that parses must plan, or fail with a topology error,
		// and every planned address must be in its range.
		p, err := MakePlan(topo)
		if err != nil {
			if _, ok := err.(*TopologyError); !ok {
				t.Fatalf("plan error of type %T: %v", err, err)
			}
			return
		}
		for _, pod := range p.Pods {
			if !p.PodCIDR.Contains(pod.IP) {
				t.Fatalf("pod %s IP %s outside %s", pod.Name, pod.IP, p.PodCIDR)
			}
		}
		for _, s := range p.Services {
			if !p.ServiceCIDR.Contains(s.VIP) {
				t.Fatalf("VIP %s outside %s", s.VIP, p.ServiceCIDR)
			}
		}
	})
}
