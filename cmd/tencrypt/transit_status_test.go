package main

import (
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/transit/agent"
)

// A transit key left under an old KEK version names both ways out
// (docs/TRANSIT.md): a new key by transit rotate, or the same key rewrapped
// by keys rewrap of the registry file.
func TestTransitStatusRotatedKEKHint(t *testing.T) {
	var b strings.Builder
	printTransitStatus(&b, []agent.Status{{Node: "node1", Healthy: true, Tenants: []agent.TenantStatus{
		{Tenant: "blue", Usable: true, KEKVersion: 1, CurrentKEKVersion: 2},
		{Tenant: "red", Usable: true, KEKVersion: 3, CurrentKEKVersion: 3},
	}}})
	out := b.String()
	for _, want := range []string{"tencrypt transit rotate blue", "tencrypt keys rewrap", ".transit.json"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "rotate red") {
		t.Errorf("a tenant at its current version gets the hint:\n%s", out)
	}
}
