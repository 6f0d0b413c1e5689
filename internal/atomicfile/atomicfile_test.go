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

func TestWrite(t *testing.T) {
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

func TestFailureLeavesNothing(t *testing.T) {
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
