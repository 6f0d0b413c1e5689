package keystest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
)

// Broken backends: each breaks one rule, and the suite must notice.
type ignoreAAD struct{ keys.KEKProvider }

func (p ignoreAAD) Wrap(ctx context.Context, tenant string, pt, _ []byte) (uint32, []byte, error) {
	return p.KEKProvider.Wrap(ctx, tenant, pt, nil)
}

func (p ignoreAAD) Unwrap(ctx context.Context, tenant string, v uint32, ct, _ []byte) ([]byte, error) {
	return p.KEKProvider.Unwrap(ctx, tenant, v, ct, nil)
}

type retireNoop struct{ keys.KEKProvider }

func (retireNoop) Retire(context.Context, string, uint32) error { return nil }

type shredNoop struct{ keys.KEKProvider }

func (shredNoop) Shred(context.Context, string) error { return nil }

var mutants = map[string]struct {
	harness func(m *keystest.Memory) keystest.Harness
	// failing names a subtest that must fail.
	failing string
}{
	"ignore-aad": {func(m *keystest.Memory) keystest.Harness {
		return keystest.Harness{
			Admin:     func(*testing.T) keys.KEKProvider { return ignoreAAD{m.Admin()} },
			ForTenant: func(_ *testing.T, tn string) keys.KEKProvider { return ignoreAAD{m.ForTenant(tn)} },
		}
	}, "AADMismatch"},
	"tenant-is-admin": {func(m *keystest.Memory) keystest.Harness {
		return keystest.Harness{
			Admin:     func(*testing.T) keys.KEKProvider { return m.Admin() },
			ForTenant: func(*testing.T, string) keys.KEKProvider { return m.Admin() },
		}
	}, "TenantIsolation"},
	"retire-noop": {func(m *keystest.Memory) keystest.Harness {
		return keystest.Harness{
			Admin:     func(*testing.T) keys.KEKProvider { return retireNoop{m.Admin()} },
			ForTenant: func(_ *testing.T, tn string) keys.KEKProvider { return m.ForTenant(tn) },
		}
	}, "Retire"},
	"shred-noop": {func(m *keystest.Memory) keystest.Harness {
		return keystest.Harness{
			Admin:     func(*testing.T) keys.KEKProvider { return shredNoop{m.Admin()} },
			ForTenant: func(_ *testing.T, tn string) keys.KEKProvider { return m.ForTenant(tn) },
		}
	}, "Shred"},
}

// TestSuiteCatchesMutants runs the suite against each broken backend in a
// child process and checks that the subtest covering the broken rule fails.
func TestSuiteCatchesMutants(t *testing.T) {
	for name, mu := range mutants {
		t.Run(name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestMutantChild$", "-test.v")
			cmd.Env = append(os.Environ(), "KEYSTEST_MUTANT="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a backend broken by %s:\n%s", name, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestMutantChild/"+mu.failing+" ") {
				t.Fatalf("subtest %s did not fail for %s:\n%s", mu.failing, name, out)
			}
		})
	}
}

// TestMutantChild is the child process of TestSuiteCatchesMutants.
func TestMutantChild(t *testing.T) {
	name := os.Getenv("KEYSTEST_MUTANT")
	if name == "" {
		return // only meaningful as a child process
	}
	keystest.Run(t, mutants[name].harness(keystest.NewMemory("", nil)))
}
