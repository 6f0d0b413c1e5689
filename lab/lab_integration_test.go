package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/netns"
	"github.com/tencrypt/tencrypt/internal/testenv"
)

// newTestLab returns a Manager with its own state dir and a topology with a
// unique lab name, and removes the lab when the test ends, pass or fail.
func newTestLab(t *testing.T) (*Manager, *Topology) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTool(t, "ip", "nft")
	topo := DefaultTopology()
	topo.Name = testenv.Name("t")
	m := New(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() {
		if _, err := m.Down(context.Background(), topo.Name); err != nil {
			t.Errorf("cleanup: lab down: %v", err)
		}
	})
	return m, topo
}

func labNamespaces(t *testing.T, name string) []string {
	t.Helper()
	all, err := netns.List()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, ns := range all {
		if strings.HasPrefix(ns, NamespacePrefix(name)) {
			ours = append(ours, ns)
		}
	}
	return ours
}

func rootLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(f[1], ":"))
		}
	}
	slices.Sort(names)
	return names
}

func rootRuleset(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestLabTraffic(t *testing.T) {
	linksBefore, rulesBefore := rootLinks(t), rootRuleset(t)
	m, topo := newTestLab(t)
	ctx := context.Background()
	plan, err := m.Up(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	if got := labNamespaces(t, topo.Name); len(got) != len(plan.Namespaces()) {
		t.Fatalf("namespaces after up: %v, want %v", got, plan.Namespaces())
	}

	// Every pod serves its name on the Services' target port.
	for _, pod := range plan.Pods {
		s, err := m.Serve(topo.Name, pod.Name, 8080)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}

	t.Run("pod to pod", func(t *testing.T) {
		tests := []struct{ name, from, to, network string }{
			{"same node tcp", "blue-1a", "blue-1b", "tcp"},
			{"same node udp", "blue-1a", "blue-1b", "udp"},
			{"across nodes tcp", "blue-1a", "blue-2b", "tcp"},
			{"across nodes udp", "blue-2a", "blue-1b", "udp"},
			{"across nodes and tenants", "red-2a", "blue-1a", "tcp"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				to, _ := plan.Pod(tt.to)
				got, err := m.Probe(ctx, topo.Name, tt.from, tt.network, fmt.Sprintf("%s:8080", to.IP))
				if err != nil {
					t.Fatal(err)
				}
				if got != tt.to {
					t.Errorf("answered by %q, want %q", got, tt.to)
				}
			})
		}
	})

	t.Run("service VIP balances over the tenant's pods", func(t *testing.T) {
		for _, svc := range plan.Services {
			var backends []string
			for _, pod := range plan.Pods {
				if pod.Tenant == svc.Tenant {
					backends = append(backends, pod.Name)
				}
			}
			// From a pod of the tenant (including hairpin to itself), from
			// a pod on the other node, over every port of the Service.
			for _, from := range []string{backends[0], backends[len(backends)-1]} {
				for _, sp := range svc.Ports {
					seen := map[string]int{}
					for range 40 {
						got, err := m.Probe(ctx, topo.Name, from, sp.Protocol, fmt.Sprintf("%s:%d", svc.VIP, sp.Port))
						if err != nil {
							t.Fatalf("%s to %s/%s %d/%s: %v", from, svc.Tenant, svc.Name, sp.Port, sp.Protocol, err)
						}
						if !slices.Contains(backends, got) {
							t.Fatalf("%s/%s VIP answered by %q, not one of %v", svc.Tenant, svc.Name, got, backends)
						}
						seen[got]++
					}
					// 40 random picks among 2 or more backends all landing on
					// one has probability below 2^-39: this checks balancing,
					// not luck.
					if len(seen) < 2 {
						t.Errorf("%s to %s/%s %d/%s: every connection went to %v", from, svc.Tenant, svc.Name, sp.Port, sp.Protocol, seen)
					}
				}
			}
		}
	})

	t.Run("up again is a no-op", func(t *testing.T) {
		before, _ := os.Stat(netns.Path(plan.Pods[0].NetNS))
		if _, err := m.Up(ctx, topo); err != nil {
			t.Fatal(err)
		}
		after, _ := os.Stat(netns.Path(plan.Pods[0].NetNS))
		if !os.SameFile(before, after) {
			t.Error("second up recreated the namespaces")
		}
		if _, err := m.Probe(ctx, topo.Name, "blue-1a", "tcp", fmt.Sprintf("%s:8080", plan.Pods[2].IP)); err != nil {
			t.Errorf("traffic after second up: %v", err)
		}
	})

	t.Run("other topology under the same name is refused", func(t *testing.T) {
		other := DefaultTopology()
		other.Name = topo.Name
		other.Nodes = other.Nodes[:1]
		other.Tenants = nil
		if _, err := m.Up(ctx, other); !errors.Is(err, ErrOtherTopology) {
			t.Errorf("err = %v, want ErrOtherTopology", err)
		}
	})

	removed, err := m.Down(ctx, topo.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(plan.Namespaces()) {
		t.Errorf("down removed %v, want %v", removed, plan.Namespaces())
	}
	if left := labNamespaces(t, topo.Name); len(left) > 0 {
		t.Errorf("namespaces left after down: %v", left)
	}
	if _, _, err := m.Status(topo.Name); !errors.Is(err, ErrNotUp) {
		t.Errorf("status after down: %v, want ErrNotUp", err)
	}
	if after := rootLinks(t); !slices.Equal(linksBefore, after) {
		t.Errorf("the machine's links changed: before %v, after %v", linksBefore, after)
	}
	if after := rootRuleset(t); after != rulesBefore {
		t.Errorf("the machine's nftables ruleset changed:\nbefore:\n%s\nafter:\n%s", rulesBefore, after)
	}
}

func TestLabDownAfterCrash(t *testing.T) {
	ctx := context.Background()
	m, topo := newTestLab(t)
	plan, err := MakePlan(topo)
	if err != nil {
		t.Fatal(err)
	}
	// Count the steps of a full build once, then crash after each of a
	// spread of them.
	var steps []string
	m.beforeStep = func(s string) error { steps = append(steps, s); return nil }
	if _, err := m.Up(ctx, topo); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Down(ctx, topo.Name); err != nil {
		t.Fatal(err)
	}
	for _, crashAt := range []int{0, 1, len(steps) / 2, len(steps) - 1} {
		t.Run(fmt.Sprintf("crash before %q", steps[crashAt]), func(t *testing.T) {
			n := 0
			m.beforeStep = func(string) error {
				if n == crashAt {
					return errSimulatedCrash
				}
				n++
				return nil
			}
			if _, err := m.Up(ctx, topo); !errors.Is(err, errSimulatedCrash) {
				t.Fatalf("up = %v, want the simulated crash", err)
			}
			st, _, err := m.Status(topo.Name)
			if err != nil || st.Phase != PhaseBuilding {
				t.Fatalf("after crash: status %+v, %v; want phase building", st, err)
			}
			// A fresh manager, as after a restart, reads the state from disk.
			fresh := New(m.stateDir, m.log)
			if _, err := fresh.Down(ctx, topo.Name); err != nil {
				t.Fatal(err)
			}
			if left := labNamespaces(t, topo.Name); len(left) > 0 {
				t.Errorf("namespaces left after down: %v", left)
			}
		})
	}

	t.Run("up after a crash rebuilds", func(t *testing.T) {
		m.beforeStep = func(s string) error {
			if strings.HasPrefix(s, "pod ") {
				return errSimulatedCrash
			}
			return nil
		}
		if _, err := m.Up(ctx, topo); !errors.Is(err, errSimulatedCrash) {
			t.Fatalf("up = %v, want the simulated crash", err)
		}
		m.beforeStep = nil
		if _, err := m.Up(ctx, topo); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Probe(ctx, topo.Name, "blue-1a", "tcp", fmt.Sprintf("%s:9", plan.Pods[3].IP)); err == nil || !strings.Contains(err.Error(), "refused") {
			// Nothing listens on port 9: a refusal proves the path is there.
			t.Errorf("probe to a closed port: %v, want connection refused", err)
		}
	})

	t.Run("down without a state file removes by prefix", func(t *testing.T) {
		if err := os.Remove(m.statePath(topo.Name)); err != nil {
			t.Fatal(err)
		}
		removed, err := m.Down(ctx, topo.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(removed) != len(plan.Namespaces()) {
			t.Errorf("removed %v, want %d namespaces", removed, len(plan.Namespaces()))
		}
	})
}

func TestUpFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	m, topo := newTestLab(t)
	m.beforeStep = func(s string) error {
		if strings.HasPrefix(s, "service rules") {
			return errors.New("injected failure")
		}
		return nil
	}
	if _, err := m.Up(ctx, topo); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("up = %v, want the injected failure", err)
	}
	if left := labNamespaces(t, topo.Name); len(left) > 0 {
		t.Errorf("a failed up left namespaces: %v", left)
	}
	if _, _, err := m.Status(topo.Name); !errors.Is(err, ErrNotUp) {
		t.Errorf("status after failed up: %v, want ErrNotUp", err)
	}
}

func TestRestartPod(t *testing.T) {
	ctx := context.Background()
	m, topo := newTestLab(t)
	plan, err := m.Up(ctx, topo)
	if err != nil {
		t.Fatal(err)
	}
	p := plan.Pods[1]
	old, err := netns.Open(p.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	// Holding the old namespace open, as an agent would, must not stop the
	// restart.
	defer old.Close()
	oldID, _ := old.ID()
	if err := m.RestartPod(ctx, topo.Name, p.Name); err != nil {
		t.Fatal(err)
	}
	fresh, err := netns.Open(p.NetNS)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if id, _ := fresh.ID(); id == oldID {
		t.Error("the pod kept its namespace")
	}
	s, err := m.Serve(topo.Name, p.Name, 8080)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := m.Probe(ctx, topo.Name, "blue-2a", "tcp", fmt.Sprintf("%s:8080", p.IP)); err != nil || got != p.Name {
		t.Errorf("after restart, probe = %q, %v", got, err)
	}
}
