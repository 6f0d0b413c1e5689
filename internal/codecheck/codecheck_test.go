package codecheck_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/codecheck"
)

// TestNoLongFunctions is the module-wide rule of docs/ARCHITECTURE.md: no
// non-test function over 80 lines without a doc comment saying why.
func TestNoLongFunctions(t *testing.T) {
	long, err := codecheck.LongFuncs(filepath.Join("..", ".."), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range long {
		t.Errorf("%s: %s is %d lines; split it by its steps, or say why in its doc comment (%q ...)", f.File, f.Name, f.Lines, codecheck.Excuse)
	}
}

// TestLongFuncsFindsThem checks the checker on a tree of its own: a long
// function and a long method are found, an excused one, a test file and a
// skipped directory are not.
func TestLongFuncsFindsThem(t *testing.T) {
	root := t.TempDir()
	body := strings.Repeat("\t_ = 0\n", codecheck.MaxLines-1) // with its two braces: MaxLines+1 lines
	write := func(name, src string) {
		t.Helper()
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/a.go", "package a\n\ntype T struct{}\n\nfunc Long() {\n"+body+"}\n\nfunc (*T) M() {\n"+body+"}\n\n// Excused is "+codecheck.Excuse+" of a table.\nfunc Excused() {\n"+body+"}\n\nfunc Short() {}\n")
	write("a/a_test.go", "package a\n\nfunc testLong() {\n"+body+"}\n")
	write("skip/s.go", "package s\n\nfunc Long() {\n"+body+"}\n")
	long, err := codecheck.LongFuncs(root, []string{"skip"})
	if err != nil {
		t.Fatal(err)
	}
	want := []codecheck.LongFunc{{File: "a/a.go", Name: "Long", Lines: codecheck.MaxLines + 1}, {File: "a/a.go", Name: "T.M", Lines: codecheck.MaxLines + 1}}
	if len(long) != len(want) {
		t.Fatalf("LongFuncs = %+v, want %+v", long, want)
	}
	for i := range want {
		if long[i] != want[i] {
			t.Errorf("LongFuncs[%d] = %+v, want %+v", i, long[i], want[i])
		}
	}
}
