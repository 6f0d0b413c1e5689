// Package codecheck holds the module's checks on its own source that gofmt,
// vet and staticcheck do not make: today, the length of functions.
package codecheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
)

// MaxLines is the longest a non-test function may be without a doc comment
// containing Excuse.
const MaxLines = 80

// Excuse is the phrase a long function's doc comment must contain, followed
// by the reason.
const Excuse = "over 80 lines because"

// LongFunc is a function over MaxLines with no Excuse.
type LongFunc struct {
	File  string // slash-separated, relative to the root given to LongFuncs
	Name  string // Recv.Method for methods
	Lines int
}

// LongFuncs walks the Go files under root, tests excluded, and returns every
// function over MaxLines whose doc comment lacks Excuse, in walk order. It
// does not descend into the directories in skip (slash-separated, relative
// to root), testdata, or directories starting with "." or "_".
func LongFuncs(root string, skip []string) ([]LongFunc, error) {
	var long []LongFunc
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || slices.Contains(skip, rel)) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			lines := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1
			if lines > MaxLines && !strings.Contains(fd.Doc.Text(), Excuse) {
				long = append(long, LongFunc{File: rel, Name: funcName(fd), Lines: lines})
			}
		}
		return nil
	})
	return long, err
}

// funcName is fd's name, with its receiver's type for a method.
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}
