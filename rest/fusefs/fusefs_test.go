package fusefs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
	"github.com/tencrypt/tencrypt/rest/names"
)

// mmapHelperEnv makes the test binary write through a shared mapping of
// the file it names, msync, read back and exit (TestMain).
const mmapHelperEnv = "TENCRYPT_FUSEFS_MMAP_HELPER"

func TestMain(m *testing.M) {
	if p := os.Getenv(mmapHelperEnv); p != "" {
		if err := mmapWrite(p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if dir := os.Getenv(userHelperEnv); dir != "" {
		if err := userOps(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if spec := os.Getenv(opsHelperEnv); spec != "" {
		if err := opsHelper(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func mmapWrite(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(fi.Size()), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return err
	}
	copy(m[4000:], "written through mmap")
	copy(m[3*4096:], "tail")
	if string(m[4000:4020]) != "written through mmap" {
		return errors.New("mmap read-back differs")
	}
	if err := unix.Msync(m, unix.MS_SYNC); err != nil {
		return err
	}
	return syscall.Munmap(m)
}

// world is a key backend with tenant blue and one volume.
type world struct {
	p      keys.KEKProvider
	env    *keys.Envelope
	cipher string
	log    *syncBuffer
}

// syncBuffer is the log of a mount, written by its request goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newWorld(t testing.TB) *world {
	t.Helper()
	p := keystest.NewMemory("local", nil).Admin()
	if err := p.CreateTenant(context.Background(), "blue"); err != nil {
		t.Fatal(err)
	}
	w := &world{p: p, env: keys.NewEnvelope(p, &keystest.AuditLog{}, time.Now), cipher: filepath.Join(t.TempDir(), "cipher"), log: &syncBuffer{}}
	if _, err := names.InitVolume(context.Background(), w.cipher, w.env, "blue", time.Now()); err != nil {
		t.Fatal(err)
	}
	return w
}

// mount mounts the volume in a new temporary directory and unmounts it in
// Cleanup, even when the test fails.
func (w *world) mount(t testing.TB) (string, *FS) {
	t.Helper()
	mnt, f, unmount := w.mountFS(t)
	t.Cleanup(unmount)
	return mnt, f
}

// mountOnce mounts the volume and returns the mount point and a function
// that unmounts it (call it once, also on failure).
func (w *world) mountOnce(t testing.TB) (string, func()) {
	t.Helper()
	mnt, _, unmount := w.mountFS(t)
	return mnt, unmount
}

// mountFS mounts the volume and returns the mount point, the file system
// and a function that unmounts it; tune changes the file system before it
// is mounted.
func (w *world) mountFS(t testing.TB, tune ...func(*FS)) (string, *FS, func()) {
	t.Helper()
	return w.mountAt(t, t.TempDir(), MountOptions{}, tune...)
}

// mountAt is mountFS on mount point mnt with options o.
func (w *world) mountAt(t testing.TB, mnt string, o MountOptions, tune ...func(*FS)) (string, *FS, func()) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("FUSE is unavailable (%v): this test needs /dev/fuse and root", err)
	}
	v, err := names.LoadVolume(w.cipher)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := v.Transform(context.Background(), w.env, "fusefs test")
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(Config{CipherDir: w.cipher, Tenant: "blue", Envelope: w.env, Names: tr,
		Log: slog.New(slog.NewTextHandler(w.log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, fn := range tune {
		fn(f)
	}
	srv, err := f.Mount(mnt, o)
	if err != nil {
		t.Fatal(err)
	}
	return mnt, f, func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
			_ = exec.Command("fusermount3", "-uz", mnt).Run()
		}
		f.Close()
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// entry is what a tree comparison sees of one path.
type entry struct {
	Mode os.FileMode
	Size int64
	Data string // file content or link target
}

func snapshot(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{Mode: fi.Mode()}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.Size, e.Data = fi.Size(), string(b)
			if int64(len(b)) != fi.Size() {
				t.Errorf("%s: stat size %d, read %d bytes", rel, fi.Size(), len(b))
			}
		case fi.Mode()&os.ModeSymlink != 0:
			e.Data, err = os.Readlink(p)
			if err != nil {
				return err
			}
			e.Size = fi.Size()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, data []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	must(t, err)
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
	must(t, f.Close())
}

// TestOpsMatchPlainDirectory runs each sequence of file operations on a
// plain directory and through the mount, and compares the trees.
func TestOpsMatchPlainDirectory(t *testing.T) {
	w := newWorld(t)
	mnt, _ := w.mount(t)
	mib := 1 << 20
	tests := []struct {
		name string
		ops  func(t *testing.T, dir string)
	}{
		{"sizes around blocks", func(t *testing.T, dir string) {
			for i, n := range []int{0, 1, 4095, 4096, 4097, mib + 7} {
				must(t, os.WriteFile(filepath.Join(dir, "f"+string(rune('a'+i))), randomBytes(n, uint64(n)), 0o644))
			}
		}},
		{"random-offset writes", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "r")
			must(t, os.WriteFile(p, randomBytes(10000, 1), 0o600))
			r := rand.New(rand.NewPCG(7, 7))
			for i := range 40 {
				writeAt(t, p, randomBytes(1+r.IntN(9000), uint64(i)), r.Int64N(30000))
			}
		}},
		{"write past the end leaves zeros", func(t *testing.T, dir string) {
			writeAt(t, filepath.Join(dir, "sparse"), []byte("end"), 3*4096+100)
		}},
		{"truncate up and down", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "t")
			must(t, os.WriteFile(p, randomBytes(9000, 3), 0o644))
			must(t, os.Truncate(p, 20000))
			must(t, os.Truncate(p, 4097))
			must(t, os.Truncate(p, 4096))
			must(t, os.Truncate(p, 5))
			writeAt(t, p, []byte("xy"), 3)
			must(t, os.Truncate(p, 0))
			must(t, os.Truncate(p, 8193))
		}},
		{"O_TRUNC and append", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "a")
			must(t, os.WriteFile(p, randomBytes(5000, 4), 0o644))
			must(t, os.WriteFile(p, []byte("short"), 0o644))
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			for range 3 {
				_, err := f.Write(randomBytes(3000, 5))
				must(t, err)
			}
			must(t, f.Close())
		}},
		{"rename across directories", func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "d1", "sub"), 0o755))
			must(t, os.Mkdir(filepath.Join(dir, "d2"), 0o750))
			must(t, os.WriteFile(filepath.Join(dir, "d1", "x"), []byte("x content"), 0o644))
			must(t, os.WriteFile(filepath.Join(dir, "d1", "sub", "y"), []byte("y content"), 0o644))
			must(t, os.Rename(filepath.Join(dir, "d1", "x"), filepath.Join(dir, "d2", "x2")))
			must(t, os.Rename(filepath.Join(dir, "d1", "sub"), filepath.Join(dir, "d2", "moved")))
			must(t, os.WriteFile(filepath.Join(dir, "d2", "over"), []byte("old"), 0o644))
			must(t, os.Rename(filepath.Join(dir, "d2", "x2"), filepath.Join(dir, "d2", "over")))
			// A directory replaces an empty one, not a full one.
			must(t, os.Mkdir(filepath.Join(dir, "empty"), 0o700))
			// (syscall.Rename: os.Rename refuses any existing directory.)
			must(t, syscall.Rename(filepath.Join(dir, "d2", "moved"), filepath.Join(dir, "empty")))
			if err := syscall.Rename(filepath.Join(dir, "d1"), filepath.Join(dir, "empty")); !errors.Is(err, syscall.ENOTEMPTY) && !errors.Is(err, syscall.EEXIST) {
				t.Errorf("rename over a full directory: %v", err)
			}
		}},
		{"hardlink", func(t *testing.T, dir string) {
			must(t, os.Mkdir(filepath.Join(dir, "h"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "h", "orig"), randomBytes(6000, 6), 0o644))
			must(t, os.Link(filepath.Join(dir, "h", "orig"), filepath.Join(dir, "h", "link")))
			writeAt(t, filepath.Join(dir, "h", "link"), []byte("through the link"), 4090)
			must(t, os.Remove(filepath.Join(dir, "h", "orig")))
		}},
		{"symlink", func(t *testing.T, dir string) {
			must(t, os.Symlink("../some/target file", filepath.Join(dir, "sl")))
			must(t, os.Symlink("f", filepath.Join(dir, "sl2")))
		}},
		{"mkdir rmdir unlink chmod", func(t *testing.T, dir string) {
			must(t, os.MkdirAll(filepath.Join(dir, "e", "f", "g"), 0o755))
			must(t, os.Remove(filepath.Join(dir, "e", "f", "g")))
			must(t, os.WriteFile(filepath.Join(dir, "e", "gone"), nil, 0o644))
			must(t, os.Remove(filepath.Join(dir, "e", "gone")))
			must(t, os.WriteFile(filepath.Join(dir, "e", "mode"), []byte("m"), 0o644))
			must(t, os.Chmod(filepath.Join(dir, "e", "mode"), 0o600))
			if err := syscall.Rmdir(filepath.Join(dir, "e")); !errors.Is(err, syscall.ENOTEMPTY) {
				t.Errorf("rmdir of a non-empty directory: %v", err)
			}
		}},
		{"long names", func(t *testing.T, dir string) {
			long := strings.Repeat("L", 255)
			must(t, os.Mkdir(filepath.Join(dir, long), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, long, long), []byte("in a long dir"), 0o644))
			must(t, os.WriteFile(filepath.Join(dir, strings.Repeat("M", 200)), []byte("m"), 0o644))
			must(t, os.Rename(filepath.Join(dir, strings.Repeat("M", 200)), filepath.Join(dir, long, "short")))
			must(t, os.Symlink("t", filepath.Join(dir, strings.Repeat("S", 180))))
			// Replacing a long-named entry keeps its sidecar right.
			must(t, os.WriteFile(filepath.Join(dir, "src"), []byte("replacement"), 0o644))
			must(t, os.Rename(filepath.Join(dir, "src"), filepath.Join(dir, long, long)))
		}},
		{"mmap write then read", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "mm")
			must(t, os.WriteFile(p, randomBytes(3*4096+10, 8), 0o644))
			// In a child process: a page fault into this process's own FUSE
			// server cannot be preempted, so a garbage collection starting
			// meanwhile would wait for it forever (a go-fuse caveat).
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), mmapHelperEnv+"="+p)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mmap helper: %v\n%s", err, out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := filepath.Join(t.TempDir(), "plain")
			enc := filepath.Join(mnt, strings.ReplaceAll(tt.name, " ", "_"))
			must(t, os.Mkdir(plain, 0o755))
			must(t, os.Mkdir(enc, 0o755))
			tt.ops(t, plain)
			tt.ops(t, enc)
			want, got := snapshot(t, plain), snapshot(t, enc)
			for _, k := range sortedKeys(want, got) {
				if want[k] != got[k] {
					t.Errorf("%s: mount has %s, plain directory %s", k, short(got[k]), short(want[k]))
				}
			}
		})
	}
}

func sortedKeys(ms ...map[string]entry) []string {
	var ks []string
	for _, m := range ms {
		for k := range m {
			if !slices.Contains(ks, k) {
				ks = append(ks, k)
			}
		}
	}
	slices.Sort(ks)
	return ks
}

func short(e entry) string {
	d := e.Data
	if len(d) > 20 {
		d = d[:20] + "..."
	}
	return e.Mode.String() + " " + strings.TrimSpace(strings.ReplaceAll(d, "\n", " ")) + " size " + strconv.FormatInt(e.Size, 10)
}
