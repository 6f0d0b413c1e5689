package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/codecheck"
)

// TestCommandsStayThin keeps cmd/tencrypt to flags, printing and calls into
// packages: no function over 80 lines without a doc comment saying why
// ("over 80 lines because ..."), no crypto import, and no backend names
// (keys/backend is the one place that knows them).
func TestCommandsStayThin(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "crypto/") || strings.HasSuffix(path, "/internal/cryptocore") || strings.HasPrefix(path, "golang.org/x/crypto") {
				t.Errorf("%s imports %s: crypto belongs in a package", name, path)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Name" {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && (id.Name == "local" || id.Name == "vault" || id.Name == "pkcs11") {
				t.Errorf("%s: %s uses %s.Name: leave backend names to keys/backend", name, fset.Position(sel.Pos()), id.Name)
			}
			return true
		})
	}
	long, err := codecheck.LongFuncs(".", nil) // internal/codecheck checks the whole module too
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range long {
		t.Errorf("%s: %s is %d lines; split it, or say why in its doc comment (%q ...)", f.File, f.Name, f.Lines, codecheck.Excuse)
	}
	if checked < 10 {
		t.Fatalf("only %d files checked", checked)
	}
}
