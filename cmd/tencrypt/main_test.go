package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// tencrypt runs one command line in-process, as main would, and returns its
// stdout, stderr and exit code.
func tencrypt(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), code
}

func TestRootHelpNamesThePlanes(t *testing.T) {
	out, _, code := tencrypt(t, "", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"transit", "rest", "keys", "lab"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help does not mention %q:\n%s", want, out)
		}
	}
}

func TestVersion(t *testing.T) {
	out, _, code := tencrypt(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "tencrypt ") || !strings.Contains(out, "go1.") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestUsageErrorsExit3(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"--bogus"}},
		{"unknown flag of a subcommand", []string{"lab", "up", "--bogus"}},
		{"extra argument", []string{"version", "x"}},
		{"unknown command", []string{"frobnicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := tencrypt(t, "", tt.args...)
			if code != 3 {
				t.Errorf("exit %d, want 3 (usage); stderr: %s", code, stderr)
			}
		})
	}
}

func TestEveryCommandGroupIsReachable(t *testing.T) {
	for _, path := range [][]string{{"lab"}, {"keys"}, {"keys", "vault"}, {"transit"}, {"agent"}} {
		out, stderr, code := tencrypt(t, "", append(path, "--help")...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("tencrypt %s --help: exit %d\n%s%s", strings.Join(path, " "), code, out, stderr)
		}
		// An unwired subcommand would show its parent's help instead.
		if !strings.Contains(out, "Usage:\n  tencrypt "+strings.Join(path, " ")) {
			t.Errorf("tencrypt %s is not wired in:\n%s", strings.Join(path, " "), out)
		}
	}
}
