package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/internal/testenv"
)

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// bothModes runs f with the unnamed temporary file (the default on the
// test's file system, which must support O_TMPFILE) and with the named
// fallback.
func bothModes(t *testing.T, f func(t *testing.T)) {
	t.Run("unnamed", f)
	t.Run("named", func(t *testing.T) {
		forceNamed = true
		t.Cleanup(func() { forceNamed = false })
		f(t)
	})
}

func TestWrite(t *testing.T) { bothModes(t, testWrite) }

func testWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	tests := []struct {
		name    string
		opts    Options
		data    string
		want    string
		wantErr error
	}{
		{"new file", Options{Perm: 0o640}, "one", "one", nil},
		{"refuses to replace", Options{}, "two", "one", fs.ErrExist},
		{"replaces when asked", Options{Replace: true}, "three", "three", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(p, []byte(tt.data), tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			got, _ := os.ReadFile(p)
			if string(got) != tt.want {
				t.Errorf("content %q, want %q", got, tt.want)
			}
			if n := entries(t, dir); len(n) != 1 {
				t.Errorf("directory holds %v, want only f", n)
			}
		})
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after replace with Perm 0 = %v, want 0600", fi.Mode().Perm())
	}
}

func TestFailureLeavesNothing(t *testing.T) { bothModes(t, testFailureLeavesNothing) }

func testFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	os.WriteFile(p, []byte("old"), 0o600)
	boom := errors.New("boom")
	for name, run := range map[string]func() error{
		"writer fails": func() error {
			return WriteFunc(p, Options{Replace: true}, func(w io.Writer) error {
				w.Write([]byte("partial"))
				return boom
			})
		},
		"before install fails": func() error {
			return Write(p, []byte("new"), Options{Replace: true, BeforeInstall: func() error { return boom }})
		},
		"directory missing": func() error {
			return Write(filepath.Join(dir, "nodir", "f"), []byte("x"), Options{})
		},
	} {
		t.Run(name, func(t *testing.T) {
			if err := run(); err == nil {
				t.Fatal("no error")
			}
			if got, _ := os.ReadFile(p); string(got) != "old" {
				t.Errorf("content %q, want the old content", got)
			}
			if n := entries(t, dir); len(n) != 1 {
				t.Errorf("directory holds %v, want only f", n)
			}
		})
	}
}

func TestDiskFullLeavesOldContent(t *testing.T) {
	testenv.RequireRoot(t)
	bothModes(t, testDiskFullLeavesOldContent)
}

func testDiskFullLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("old"), Options{}); err != nil {
		t.Fatal(err)
	}
	err := Write(p, make([]byte, 1<<20), Options{Replace: true})
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("err = %v, want ENOSPC", err)
	}
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("content %q after a full disk, want the old content", got)
	}
	if n := entries(t, dir); len(n) != 1 {
		t.Errorf("directory holds %v, want only f", n)
	}
}

// TestUnnamedWhileWriting checks that, where O_TMPFILE works, the file being
// written has no directory entry at all, so a SIGKILL at that moment leaves
// nothing; and that an existing file is refused only at install time.
func TestUnnamedWhileWriting(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	err := WriteFunc(p, Options{}, func(w io.Writer) error {
		if _, err := w.Write(make([]byte, 1<<20)); err != nil {
			return err
		}
		if n := entries(t, dir); len(n) != 0 {
			t.Errorf("while writing the directory holds %v, want nothing", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(p); err != nil || fi.Size() != 1<<20 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("installed file: %v, %v", fi, err)
	}
	err = WriteFunc(p, Options{}, func(w io.Writer) error {
		_, err := w.Write([]byte("other"))
		return err
	})
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("err = %v, want fs.ErrExist", err)
	}
	if fi, _ := os.Stat(p); fi.Size() != 1<<20 {
		t.Errorf("size %d after a refused write, want the old file", fi.Size())
	}
	if n := entries(t, dir); len(n) != 1 {
		t.Errorf("directory holds %v, want only f", n)
	}
}
