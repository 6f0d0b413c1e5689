package main

import (
	"strings"
	"testing"
)

// keys audit --help must not promise more than a client-written log gives
// (issue 16, finding 6).
func TestKeysAuditHelpSaysAdvisory(t *testing.T) {
	e := newKeysEnv(t)
	out := e.ok("keys", "audit", "--help")
	for _, want := range []string{"advisory", "Vault's audit device", "TENCRYPT_AUDIT_LOG"} {
		if !strings.Contains(out, want) {
			t.Fatalf("keys audit --help does not say %q:\n%s", want, out)
		}
	}
}
