// Package testenv holds checks shared by tests that need the real machine:
// root, network namespaces, tools. A test that cannot set itself up fails
// with the reason; it never skips, since a skipped test proves nothing.
package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"testing"
)

// RequireRoot fails the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatal("this test needs root (network namespaces, nftables, FUSE, key tokens): run it as root, as 'make test' and CI do")
	}
}

// RequireTool fails the test unless each named command is on PATH.
func RequireTool(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			tb.Fatalf("this test needs %q on PATH: run scripts/setup (make test does)", n)
		}
	}
}

// Name returns prefix followed by six random hex digits, for objects on the
// machine (network namespaces, labs, keys) that must not collide with those
// of another test or an earlier, interrupted run.
func Name(prefix string) string {
	b := make([]byte, 3)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// FileTail returns the last max bytes of the file at path, for the failure
// messages of tests that run a server with its output in a log file.
func FileTail(path string, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
