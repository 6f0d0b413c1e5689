package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/testenv"
)

func TestLabBadTopologyNamesTheLine(t *testing.T) {
	f := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(f, []byte("nodes:\n  - name: n1\ntenants:\n  - name: a\n    pods:\n      - {name: a1, node: n9}\n"), 0o644)
	_, stderr, code := tencrypt(t, "", "lab", "up", "--state-dir", t.TempDir(), "--topology", f)
	if code != 3 {
		t.Errorf("exit %d, want 3", code)
	}
	want := f + `:6: pod "a1": node "n9" is not defined (nodes: n1)`
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

func TestLabStatusWhenNotUp(t *testing.T) {
	_, stderr, code := tencrypt(t, "", "lab", "status", "--state-dir", t.TempDir(), "--name", "nothere")
	if code != 1 || !strings.Contains(stderr, `no lab named "nothere"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestLabCLI(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	name := testenv.Name("c")
	// Flags go before the arguments, since exec passes everything after
	// "--" to the command.
	lab := func(sub string, args ...string) (string, string, int) {
		return tencrypt(t, "", append([]string{"lab", sub, "--state-dir", dir, "--name", name}, args...)...)
	}
	t.Cleanup(func() { lab("down") })

	out, stderr, code := lab("up", "--json")
	if code != 0 {
		t.Fatalf("up: exit %d: %s", code, stderr)
	}
	var plan struct {
		Name string
		Pods []struct{ Name, IP string }
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil || plan.Name != name || len(plan.Pods) != 6 {
		t.Fatalf("up --json: %v, %+v\n%s", err, plan, out)
	}

	out, _, code = lab("status", "--json")
	var st struct {
		Phase   string
		Missing []string `json:"missing_netns"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.Phase != "up" || len(st.Missing) != 0 {
		t.Errorf("status --json: exit %d, %v, %+v", code, err, st)
	}

	// exec runs inside the pod and passes the exit code through.
	out, _, code = lab("exec", "blue-2a", "--", "ip", "-o", "-4", "addr", "show", "eth0")
	if code != 0 || !strings.Contains(out, plan.Pods[2].IP+"/24") {
		t.Errorf("exec ip addr: exit %d, %q, want %s", code, out, plan.Pods[2].IP)
	}
	if _, _, code = lab("exec", "node1", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec exit code: %d, want 7", code)
	}
	if _, _, code = lab("exec", "nosuchpod", "--", "true"); code != 3 {
		t.Errorf("exec on unknown pod: exit %d, want 3", code)
	}

	out, _, code = lab("down", "--json")
	var down struct {
		Removed []string `json:"removed_netns"`
	}
	if err := json.Unmarshal([]byte(out), &down); err != nil || code != 0 || len(down.Removed) != 9 {
		t.Errorf("down --json: exit %d, %v, %s", code, err, out)
	}
}
