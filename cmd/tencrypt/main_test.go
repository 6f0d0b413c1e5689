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
