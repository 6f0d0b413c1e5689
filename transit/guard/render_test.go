package guard

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/transit/registry"
)

func addrs(ss ...string) []netip.Addr {
	var as []netip.Addr
	for _, s := range ss {
		as = append(as, netip.MustParseAddr(s))
	}
	return as
}

func baseConfig() Config {
	return Config{TunnelIf: "tenc0", ListenPort: 51820, FwMark: 0xca6c, Self: netip.MustParseAddr("10.244.1.2")}
}

// The whole table of the simplest guard, written out: the contract a reader
// of `nft list ruleset` in a pod sees.
const emptyDefinition = `table inet tencrypt-guard {
	counter plaintext-in { }
	counter vip-in { }
	counter plaintext-out { }
	counter vip-out { }
	set peers {
		type ipv4_addr;
	}
	set vips {
		type ipv4_addr;
	}
	chain input {
		type filter hook input priority raw; policy accept;
		iif "lo" accept
		iifname "tenc0" accept
		ip saddr @peers udp dport 51820 socket mark 0xca6c accept
		ip saddr @peers counter name "plaintext-in" drop
		ip saddr @vips counter name "vip-in" drop
	}
	chain egress {
		type filter hook postrouting priority filter; policy accept;
		meta mark 0xca6c udp sport 51820 accept
		ct state new ip daddr @peers ct mark set ct mark | 0x20000000
		ct state new ct original ip daddr @vips ct mark set ct mark | 0x20000000
		oif "lo" accept
		oifname "tenc0" accept
		ip daddr @peers counter name "plaintext-out" drop
		ip daddr @vips counter name "vip-out" drop
		ct mark & 0x20000000 == 0x20000000 counter name "plaintext-out" drop
	}
	chain services {
		type nat hook output priority -100; policy accept;
	}
}
`

func TestRenderEmpty(t *testing.T) {
	p, err := validate(baseConfig())
	if err != nil {
		t.Fatal(err)
	}
	wantApply := `table inet tencrypt-guard {
	counter plaintext-in { }
	counter vip-in { }
	counter plaintext-out { }
	counter vip-out { }
	set peers { type ipv4_addr; }
	set vips { type ipv4_addr; }
	chain input { type filter hook input priority raw; policy accept; }
	chain egress { type filter hook postrouting priority filter; policy accept; }
	chain services { type nat hook output priority -100; policy accept; }
}
flush table inet tencrypt-guard
flush set inet tencrypt-guard peers
flush set inet tencrypt-guard vips
` + emptyDefinition
	if got := applyScript(p); got != wantApply {
		t.Errorf("applyScript:\n%s\nwant:\n%s", got, wantApply)
	}
	wantReplace := "table inet tencrypt-guard\ndelete table inet tencrypt-guard\n" + emptyDefinition
	if got := replaceScript(p); got != wantReplace {
		t.Errorf("replaceScript:\n%s\nwant:\n%s", got, wantReplace)
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		want []string // lines (trimmed) that must appear, in this order
		not  []string // substrings that must not appear
	}{
		{
			name: "one peer, no services",
			cfg:  func(c *Config) { c.Peers = addrs("10.244.2.3") },
			want: []string{"set peers {", "elements = { 10.244.2.3 }", "set vips {", "}"},
			not:  []string{"dnat"},
		},
		{
			name: "many peers sorted, duplicates and self dropped, v4-mapped unmapped",
			cfg: func(c *Config) {
				c.Peers = addrs("10.244.2.9", "10.244.1.2", "::ffff:10.244.1.3", "10.244.2.10", "10.244.2.9")
			},
			want: []string{"elements = { 10.244.1.3, 10.244.2.9, 10.244.2.10 }"},
			not:  []string{"10.244.1.2,", "::ffff"},
		},
		{
			name: "one service, one backend: plain dnat",
			cfg: func(c *Config) {
				c.Services = []registry.Service{{VIP: netip.MustParseAddr("10.96.0.10"),
					Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 8080}}, Backends: addrs("10.244.2.3")}}
			},
			want: []string{
				"set vips {", "elements = { 10.96.0.10 }",
				"ip daddr 10.96.0.10 tcp dport 80 dnat ip to 10.244.2.3:8080",
			},
			not: []string{"numgen"},
		},
		{
			name: "many services, ports and backends: numgen map, sorted, target port defaults to port",
			cfg: func(c *Config) {
				c.Peers = addrs("10.244.2.3", "10.244.2.4")
				c.Services = []registry.Service{
					{VIP: netip.MustParseAddr("10.96.0.20"), Ports: []registry.Port{{Protocol: "udp", Port: 53, TargetPort: 0}, {Protocol: "tcp", Port: 53, TargetPort: 5353}},
						Backends: addrs("10.244.2.4", "10.244.1.2", "10.244.2.3")},
					{VIP: netip.MustParseAddr("10.96.0.10"), Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 8080}},
						Backends: addrs("10.244.2.3", "10.244.2.4")},
				}
			},
			want: []string{
				"elements = { 10.244.2.3, 10.244.2.4 }",
				"elements = { 10.96.0.10, 10.96.0.20 }",
				"ip daddr 10.96.0.10 tcp dport 80 dnat ip to numgen random mod 2 map { 0 : 10.244.2.3 . 8080, 1 : 10.244.2.4 . 8080 }",
				"ip daddr 10.96.0.20 tcp dport 53 dnat ip to numgen random mod 3 map { 0 : 10.244.1.2 . 5353, 1 : 10.244.2.3 . 5353, 2 : 10.244.2.4 . 5353 }",
				"ip daddr 10.96.0.20 udp dport 53 dnat ip to numgen random mod 3 map { 0 : 10.244.1.2 . 53, 1 : 10.244.2.3 . 53, 2 : 10.244.2.4 . 53 }",
			},
		},
		{
			name: "service without backends: VIP guarded, no dnat",
			cfg: func(c *Config) {
				c.Services = []registry.Service{{VIP: netip.MustParseAddr("10.96.0.30"), Ports: []registry.Port{{Protocol: "tcp", Port: 443, TargetPort: 8443}}}}
			},
			want: []string{"elements = { 10.96.0.30 }", `ip daddr @vips counter name "vip-out" drop`},
			not:  []string{"dnat"},
		},
		{
			name: "other interface, port and mark",
			cfg:  func(c *Config) { c.TunnelIf, c.ListenPort, c.FwMark = "wg-x.1", 4500, 0x1 },
			want: []string{
				`iifname "wg-x.1" accept`,
				"ip saddr @peers udp dport 4500 socket mark 0x1 accept",
				"meta mark 0x1 udp sport 4500 accept",
				`oifname "wg-x.1" accept`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.cfg(&cfg)
			p, err := validate(cfg)
			if err != nil {
				t.Fatal(err)
			}
			for _, script := range []string{applyScript(p), replaceScript(p)} {
				// Both scripts end with the same definition.
				def := script[strings.LastIndex(script, "table inet tencrypt-guard {"):]
				lines := strings.Split(def, "\n")
				i := 0
				for _, l := range lines {
					if i < len(tt.want) && strings.TrimSpace(l) == tt.want[i] {
						i++
					}
				}
				if i < len(tt.want) {
					t.Errorf("line %q missing (or out of order) in:\n%s", tt.want[i], def)
				}
				for _, n := range tt.not {
					if strings.Contains(def, n) {
						t.Errorf("%q must not appear in:\n%s", n, def)
					}
				}
			}
		})
	}
}

func TestRenderDeterministic(t *testing.T) {
	a, b := baseConfig(), baseConfig()
	a.Peers = addrs("10.0.0.1", "10.0.0.2", "10.0.0.3")
	b.Peers = addrs("10.0.0.3", "10.0.0.1", "10.0.0.2")
	a.Services = []registry.Service{
		{VIP: netip.MustParseAddr("10.96.0.1"), Ports: []registry.Port{{Protocol: "tcp", Port: 1, TargetPort: 1}, {Protocol: "udp", Port: 2, TargetPort: 2}}, Backends: addrs("10.0.0.1", "10.0.0.2")},
		{VIP: netip.MustParseAddr("10.96.0.2"), Ports: []registry.Port{{Protocol: "tcp", Port: 3, TargetPort: 3}}, Backends: addrs("10.0.0.3")},
	}
	b.Services = []registry.Service{
		{VIP: netip.MustParseAddr("10.96.0.2"), Ports: []registry.Port{{Protocol: "tcp", Port: 3, TargetPort: 3}}, Backends: addrs("10.0.0.3")},
		{VIP: netip.MustParseAddr("10.96.0.1"), Ports: []registry.Port{{Protocol: "udp", Port: 2, TargetPort: 2}, {Protocol: "tcp", Port: 1, TargetPort: 1}}, Backends: addrs("10.0.0.2", "10.0.0.1")},
	}
	pa, err := validate(a)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := validate(b)
	if err != nil {
		t.Fatal(err)
	}
	if applyScript(pa) != applyScript(pb) {
		t.Errorf("same configuration in another order renders differently:\n%s\n---\n%s", applyScript(pa), applyScript(pb))
	}
}

func TestValidateRejects(t *testing.T) {
	svc := func(vip string, ports ...registry.Port) registry.Service {
		return registry.Service{VIP: netip.MustParseAddr(vip), Ports: ports, Backends: addrs("10.244.2.3")}
	}
	tests := []struct {
		name string
		cfg  func(*Config)
	}{
		{"no tunnel interface", func(c *Config) { c.TunnelIf = "" }},
		{"interface name too long", func(c *Config) { c.TunnelIf = "abcdefghijklmnop" }},
		{"interface name with a quote", func(c *Config) { c.TunnelIf = `x" accept` }},
		{"interface name with a space", func(c *Config) { c.TunnelIf = "ten c0" }},
		{"listen port 0", func(c *Config) { c.ListenPort = 0 }},
		{"fwmark 0", func(c *Config) { c.FwMark = 0 }},
		{"no self", func(c *Config) { c.Self = netip.Addr{} }},
		{"self IPv6", func(c *Config) { c.Self = netip.MustParseAddr("fd00::1") }},
		{"peer IPv6", func(c *Config) { c.Peers = addrs("fd00::2") }},
		{"peer unspecified", func(c *Config) { c.Peers = addrs("0.0.0.0") }},
		{"peer zero value", func(c *Config) { c.Peers = []netip.Addr{{}} }},
		{"VIP zero value", func(c *Config) {
			c.Services = []registry.Service{{Ports: []registry.Port{{Protocol: "tcp", Port: 80, TargetPort: 80}}}}
		}},
		{"VIP twice", func(c *Config) {
			c.Services = []registry.Service{svc("10.96.0.1", registry.Port{Protocol: "tcp", Port: 80, TargetPort: 80}), svc("10.96.0.1", registry.Port{Protocol: "tcp", Port: 81, TargetPort: 81})}
		}},
		{"VIP is a peer", func(c *Config) {
			c.Peers = addrs("10.96.0.1")
			c.Services = []registry.Service{svc("10.96.0.1", registry.Port{Protocol: "tcp", Port: 80, TargetPort: 80})}
		}},
		{"VIP is self", func(c *Config) {
			c.Services = []registry.Service{svc("10.244.1.2", registry.Port{Protocol: "tcp", Port: 80, TargetPort: 80})}
		}},
		{"no ports", func(c *Config) { c.Services = []registry.Service{svc("10.96.0.1")} }},
		{"protocol sctp", func(c *Config) {
			c.Services = []registry.Service{svc("10.96.0.1", registry.Port{Protocol: "sctp", Port: 80, TargetPort: 80})}
		}},
		{"protocol upper case", func(c *Config) {
			c.Services = []registry.Service{svc("10.96.0.1", registry.Port{Protocol: "TCP", Port: 80, TargetPort: 80})}
		}},
		{"port 0", func(c *Config) {
			c.Services = []registry.Service{svc("10.96.0.1", registry.Port{Protocol: "tcp", Port: 0, TargetPort: 80})}
		}},
		{"port twice", func(c *Config) {
			c.Services = []registry.Service{svc("10.96.0.1", registry.Port{Protocol: "tcp", Port: 80, TargetPort: 80}, registry.Port{Protocol: "tcp", Port: 80, TargetPort: 81})}
		}},
		{"backend IPv6", func(c *Config) {
			s := svc("10.96.0.1", registry.Port{Protocol: "tcp", Port: 80, TargetPort: 80})
			s.Backends = addrs("fd00::3")
			c.Services = []registry.Service{s}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := baseConfig()
			tt.cfg(&cfg)
			if _, err := validate(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("validate = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestValidateAcceptsSameProtocolPortOnTwoProtocols(t *testing.T) {
	cfg := baseConfig()
	cfg.Services = []registry.Service{{VIP: netip.MustParseAddr("10.96.0.1"),
		Ports: []registry.Port{{Protocol: "tcp", Port: 53, TargetPort: 53}, {Protocol: "udp", Port: 53, TargetPort: 53}}, Backends: addrs("10.244.2.3")}}
	if _, err := validate(cfg); err != nil {
		t.Fatal(err)
	}
}
