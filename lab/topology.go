package lab

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Topology is what a lab is made of, as written in a topology file
// (docs/LAB.md). Addresses left out are planned by Plan.
type Topology struct {
	// Name distinguishes labs on one machine; every namespace the lab makes
	// is called "tl-<name>-...". At most 8 lower-case letters and digits.
	Name string `yaml:"name"`
	// PodCIDR is split into one /24 per node, in node order.
	PodCIDR string `yaml:"podCIDR"`
	// ServiceCIDR holds the Services' virtual IPs.
	ServiceCIDR string `yaml:"serviceCIDR"`
	// UnderlayCIDR numbers the nodes on the underlay switch that carries
	// VXLAN between them.
	UnderlayCIDR string `yaml:"underlayCIDR"`

	Nodes   []NodeSpec   `yaml:"nodes"`
	Tenants []TenantSpec `yaml:"tenants"`
}

// NodeSpec is one node.
type NodeSpec struct {
	Name string `yaml:"name"`
	line int
}

// TenantSpec is one tenant, with its pods and Services.
type TenantSpec struct {
	Name     string        `yaml:"name"`
	Pods     []PodSpec     `yaml:"pods"`
	Services []ServiceSpec `yaml:"services"`
	line     int
}

// PodSpec places a pod on a node.
type PodSpec struct {
	Name string `yaml:"name"`
	Node string `yaml:"node"`
	line int
}

// ServiceSpec is a ClusterIP Service balancing over all of its tenant's pods.
type ServiceSpec struct {
	Name string `yaml:"name"`
	// VIP is optional; Plan takes the next free address of ServiceCIDR.
	VIP   string     `yaml:"vip"`
	Ports []PortSpec `yaml:"ports"`
	line  int
}

// PortSpec is one port of a Service.
type PortSpec struct {
	// Protocol is "tcp" (the default) or "udp".
	Protocol string `yaml:"protocol"`
	Port     uint16 `yaml:"port"`
	// TargetPort is the pods' port; it defaults to Port.
	TargetPort uint16 `yaml:"targetPort"`
	line       int
}

// The yaml decoder gives each spec the line it starts on, so that errors
// found after decoding can still point into the file.
func (n *NodeSpec) UnmarshalYAML(v *yaml.Node) error {
	type plain NodeSpec
	if err := strictDecode(v, (*plain)(n)); err != nil {
		return err
	}
	n.line = v.Line
	return nil
}

func (t *TenantSpec) UnmarshalYAML(v *yaml.Node) error {
	type plain TenantSpec
	if err := strictDecode(v, (*plain)(t)); err != nil {
		return err
	}
	t.line = v.Line
	return nil
}

func (p *PodSpec) UnmarshalYAML(v *yaml.Node) error {
	type plain PodSpec
	if err := strictDecode(v, (*plain)(p)); err != nil {
		return err
	}
	p.line = v.Line
	return nil
}

func (s *ServiceSpec) UnmarshalYAML(v *yaml.Node) error {
	type plain ServiceSpec
	if err := strictDecode(v, (*plain)(s)); err != nil {
		return err
	}
	s.line = v.Line
	return nil
}

func (p *PortSpec) UnmarshalYAML(v *yaml.Node) error {
	type plain PortSpec
	if err := strictDecode(v, (*plain)(p)); err != nil {
		return err
	}
	p.line = v.Line
	return nil
}

// strictDecode decodes a mapping node, refusing keys the struct lacks (a
// misspelt key must not silently fall back to a default). yaml.Node.Decode
// has no strict mode, so the keys are checked here.
func strictDecode(v *yaml.Node, out any) error {
	if v.Kind != yaml.MappingNode {
		return &TopologyError{Line: v.Line, Msg: fmt.Sprintf("expected a mapping (key: value), found %s", kindName(v))}
	}
	known := yamlFields(out)
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		if !known[k.Value] {
			return &TopologyError{Line: k.Line, Msg: fmt.Sprintf("unknown field %q (valid: %s)", k.Value, strings.Join(sortedKeys(known), ", "))}
		}
	}
	return v.Decode(out)
}

// TopologyError is a problem in a topology file, with the line it is on.
type TopologyError struct {
	File string
	Line int
	Msg  string
}

func (e *TopologyError) Error() string {
	file := e.File
	if file == "" {
		file = "topology"
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", file, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", file, e.Msg)
}

//go:embed default.yaml
var defaultTopology []byte

// DefaultTopology is the built-in lab: two nodes, tenants blue (two pods per
// node) and red (one pod per node), one Service per tenant.
func DefaultTopology() *Topology {
	t, err := ParseTopology("default.yaml", defaultTopology)
	if err != nil {
		panic("BUG: built-in topology is invalid: " + err.Error())
	}
	return t
}

// ParseTopology reads and validates a topology file. name is used in errors.
func ParseTopology(name string, data []byte) (*Topology, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || err == nil && len(doc.Content) == 0 {
		return nil, &TopologyError{File: name, Msg: "file is empty"}
	}
	if err != nil {
		return nil, yamlError(name, err)
	}
	t := &Topology{}
	type plain Topology
	if err := strictDecode(doc.Content[0], (*plain)(t)); err != nil {
		return nil, yamlError(name, err)
	}
	if err := t.validate(); err != nil {
		var te *TopologyError
		if errors.As(err, &te) {
			te.File = name
		}
		return nil, err
	}
	return t, nil
}

// yamlError turns the decoder's errors ("yaml: line 3: ...") into ours.
func yamlError(file string, err error) error {
	var te *TopologyError
	if errors.As(err, &te) {
		te.File = file
		return te
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var ye *yaml.TypeError
	if errors.As(err, &ye) && len(ye.Errors) > 0 {
		msg = ye.Errors[0]
	}
	var line int
	if _, serr := fmt.Sscanf(msg, "line %d:", &line); serr == nil {
		_, msg, _ = strings.Cut(msg, ": ")
	}
	return &TopologyError{File: file, Line: line, Msg: msg}
}

var (
	labNameRE = regexp.MustCompile(`^[a-z0-9]{1,8}$`)
	// Object names are DNS-1123 labels, as in Kubernetes, short enough to
	// fit in a namespace name with the lab's prefix.
	objNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)
)

const (
	defaultPodCIDR      = "10.244.0.0/16"
	defaultServiceCIDR  = "10.96.0.0/16"
	defaultUnderlayCIDR = "10.200.0.0/24"
	// maxNodes and maxPodsPerNode follow from the address plan: a /24 of
	// the pod range per node, with .0 for the VXLAN device and .1 for the
	// bridge.
	maxNodes       = 250
	maxPodsPerNode = 250
)

// validate fills in the defaults and checks the topology in the order a
// reader meets it: name, networks, nodes, then each tenant's pods and
// services. The first problem is returned as a *TopologyError.
func (t *Topology) validate() error {
	if t.Name == "" {
		t.Name = "lab"
	}
	if !labNameRE.MatchString(t.Name) {
		return &TopologyError{Msg: fmt.Sprintf("name %q: want 1 to 8 lower-case letters or digits", t.Name)}
	}
	if err := t.validateNetworks(); err != nil {
		return err
	}
	if len(t.Nodes) == 0 {
		return &TopologyError{Msg: "no nodes: a lab needs at least one"}
	}
	if len(t.Nodes) > maxNodes {
		return &TopologyError{Msg: fmt.Sprintf("%d nodes: at most %d", len(t.Nodes), maxNodes)}
	}
	names := map[string]int{} // node and pod names share one space: lab exec takes either
	podsOn := map[string]int{}
	for _, n := range t.Nodes {
		if err := checkName("node", n.Name, n.line, names); err != nil {
			return err
		}
	}
	tenants := map[string]int{}
	for _, tn := range t.Tenants {
		if !objNameRE.MatchString(tn.Name) {
			return &TopologyError{Line: tn.line, Msg: fmt.Sprintf("tenant name %q: want a DNS-1123 label of at most 32 characters", tn.Name)}
		}
		if l, dup := tenants[tn.Name]; dup {
			return &TopologyError{Line: tn.line, Msg: fmt.Sprintf("tenant %q is defined twice (first on line %d)", tn.Name, l)}
		}
		tenants[tn.Name] = tn.line
		if err := t.validatePods(tn, names, podsOn); err != nil {
			return err
		}
		svcs := map[string]bool{}
		for i := range tn.Services {
			if err := t.validateService(tn, &tn.Services[i], svcs); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateNetworks fills in the default networks and checks that each is an
// IPv4 network big enough for its use and that none overlaps another.
func (t *Topology) validateNetworks() error {
	for _, c := range []struct {
		field string
		val   *string
		def   string
		bits  int
	}{
		{"podCIDR", &t.PodCIDR, defaultPodCIDR, 16},
		{"serviceCIDR", &t.ServiceCIDR, defaultServiceCIDR, 24},
		{"underlayCIDR", &t.UnderlayCIDR, defaultUnderlayCIDR, 24},
	} {
		if *c.val == "" {
			*c.val = c.def
		}
		p, err := netip.ParsePrefix(*c.val)
		if err != nil || !p.Addr().Is4() || p != p.Masked() {
			return &TopologyError{Msg: fmt.Sprintf("%s %q: want an IPv4 network such as %s", c.field, *c.val, c.def)}
		}
		if p.Bits() > c.bits {
			return &TopologyError{Msg: fmt.Sprintf("%s %q: too small, want a /%d or larger", c.field, *c.val, c.bits)}
		}
	}
	cidrs := []string{t.PodCIDR, t.ServiceCIDR, t.UnderlayCIDR}
	for i := range cidrs {
		for j := i + 1; j < len(cidrs); j++ {
			if netip.MustParsePrefix(cidrs[i]).Overlaps(netip.MustParsePrefix(cidrs[j])) {
				return &TopologyError{Msg: fmt.Sprintf("networks %s and %s overlap", cidrs[i], cidrs[j])}
			}
		}
	}
	return nil
}

// validatePods checks tn's pods: unique names (names holds every node and
// pod name so far), an existing node each, and at most maxPodsPerNode on a
// node (podsOn counts across tenants).
func (t *Topology) validatePods(tn TenantSpec, names, podsOn map[string]int) error {
	for _, p := range tn.Pods {
		if err := checkName("pod", p.Name, p.line, names); err != nil {
			return err
		}
		if !t.hasNode(p.Node) {
			return &TopologyError{Line: p.line, Msg: fmt.Sprintf("pod %q: node %q is not defined (nodes: %s)", p.Name, p.Node, strings.Join(t.nodeNames(), ", "))}
		}
		podsOn[p.Node]++
		if podsOn[p.Node] > maxPodsPerNode {
			return &TopologyError{Line: p.line, Msg: fmt.Sprintf("node %q has more than %d pods", p.Node, maxPodsPerNode)}
		}
	}
	return nil
}

// validateService checks one of tn's services and fills in its ports'
// defaults; svcs holds the tenant's service names so far.
func (t *Topology) validateService(tn TenantSpec, s *ServiceSpec, svcs map[string]bool) error {
	if !objNameRE.MatchString(s.Name) {
		return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service name %q: want a DNS-1123 label of at most 32 characters", s.Name)}
	}
	if svcs[s.Name] {
		return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service %q is defined twice in tenant %q", s.Name, tn.Name)}
	}
	svcs[s.Name] = true
	if len(s.Ports) == 0 {
		return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service %q: no ports", s.Name)}
	}
	if err := validatePorts(s); err != nil {
		return err
	}
	if len(tn.Pods) == 0 {
		return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service %q: tenant %q has no pods to balance over", s.Name, tn.Name)}
	}
	if s.VIP != "" {
		a, err := netip.ParseAddr(s.VIP)
		if err != nil || !netip.MustParsePrefix(t.ServiceCIDR).Contains(a) {
			return &TopologyError{Line: s.line, Msg: fmt.Sprintf("service %q: vip %q is not an address in serviceCIDR %s", s.Name, s.VIP, t.ServiceCIDR)}
		}
	}
	return nil
}

// validatePorts fills in s's ports' defaults (tcp; the target port is the
// port) and checks that each is given once.
func validatePorts(s *ServiceSpec) error {
	seen := map[string]int{}
	for j := range s.Ports {
		sp := &s.Ports[j]
		if sp.Protocol == "" {
			sp.Protocol = "tcp"
		}
		if sp.Protocol != "tcp" && sp.Protocol != "udp" {
			return &TopologyError{Line: sp.line, Msg: fmt.Sprintf("service %q: protocol %q: want tcp or udp", s.Name, sp.Protocol)}
		}
		if sp.Port == 0 {
			return &TopologyError{Line: sp.line, Msg: fmt.Sprintf("service %q: port is missing", s.Name)}
		}
		if sp.TargetPort == 0 {
			sp.TargetPort = sp.Port
		}
		key := fmt.Sprintf("%d/%s", sp.Port, sp.Protocol)
		if l, dup := seen[key]; dup {
			return &TopologyError{Line: sp.line, Msg: fmt.Sprintf("service %q: port %s is listed twice (first on line %d)", s.Name, key, l)}
		}
		seen[key] = sp.line
	}
	return nil
}

func checkName(kind, name string, line int, seen map[string]int) error {
	if !objNameRE.MatchString(name) {
		return &TopologyError{Line: line, Msg: fmt.Sprintf("%s name %q: want a DNS-1123 label of at most 32 characters", kind, name)}
	}
	if l, dup := seen[name]; dup {
		return &TopologyError{Line: line, Msg: fmt.Sprintf("%s name %q is already used on line %d (node and pod names must all differ)", kind, name, l)}
	}
	seen[name] = line
	return nil
}

func (t *Topology) hasNode(name string) bool {
	for _, n := range t.Nodes {
		if n.Name == name {
			return true
		}
	}
	return false
}

func (t *Topology) nodeNames() []string {
	var s []string
	for _, n := range t.Nodes {
		s = append(s, n.Name)
	}
	return s
}

func kindName(v *yaml.Node) string {
	switch v.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", v.Value)
	case yaml.AliasNode:
		return "an alias"
	default:
		return "a document"
	}
}
