package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/exitcodes"
)

// mounted reports whether dir is a mount point (per /proc/self/mountinfo).
func mounted(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
}

// mountProc is a running 'tencrypt mount'.
type mountProc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	dir    string
	done   chan error
}

// startMount runs 'tencrypt mount cipher <new temp dir>' and waits until
// the mount is up. Cleanup stops it (SIGTERM, then a lazy unmount) even if
// the test failed.
func startMount(t *testing.T, e *keysEnv, cipher string) *mountProc {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("FUSE is unavailable (%v): this test needs /dev/fuse, fusermount3 (scripts/setup) and root", err)
	}
	dir := t.TempDir()
	m := &mountProc{stderr: &bytes.Buffer{}, dir: dir, done: make(chan error, 1)}
	m.cmd = exec.Command(e.bin, "mount", cipher, dir)
	m.cmd.Env = e.env
	m.cmd.Stderr = m.stderr
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.done:
			case <-time.After(20 * time.Second):
				_ = m.cmd.Process.Kill()
				<-m.done
			}
		}
		if mounted(t, dir) {
			_ = exec.Command("fusermount3", "-uz", dir).Run()
		}
	})
	for deadline := time.Now().Add(20 * time.Second); !mounted(t, dir); {
		select {
		case err := <-m.done:
			t.Fatalf("tencrypt mount exited: %v\n%s", err, m.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tencrypt mount did not mount %s\n%s", dir, m.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

// stop sends sig and checks that the mount process exits 0 and unmounted.
func (m *mountProc) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := m.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	m.wait(t)
}

func (m *mountProc) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-m.done:
		if err != nil {
			t.Fatalf("tencrypt mount: %v\n%s", err, m.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tencrypt mount did not stop\n%s", m.stderr)
	}
	if mounted(t, m.dir) {
		t.Fatalf("%s is still mounted", m.dir)
	}
}

// TestMountEndToEnd: a tree written through the mount survives unmount on
// SIGTERM, tar and rsync of the cipher directory, and remounting; a single
// cipher file decrypts with 'tencrypt file decrypt'; fusermount3 -u ends
// the mount; a tampered block reads as EIO.
func TestMountEndToEnd(t *testing.T) {
	e := newFileEnv(t)
	cipher := filepath.Join(e.dir, "cipher")
	e.ok("volume", "init", cipher, "--tenant", "blue")
	e.want(exitcodes.Usage, "volume", "init", cipher, "--tenant", "blue")
	e.want(exitcodes.Usage, "mount", cipher, t.TempDir(), "--tenant", "red")
	e.want(exitcodes.NotTencrypt, "mount", t.TempDir(), t.TempDir())

	m := startMount(t, e, cipher)
	files := map[string][]byte{
		"empty":                    nil,
		"one":                      {'1'},
		"docs/report.txt":          randomBytes(4095, 1),
		"docs/block":               randomBytes(4096, 2),
		"docs/deep/er/block+1":     randomBytes(4097, 3),
		"big.bin":                  randomBytes(1<<20+7, 4),
		strings.Repeat("n", 250):   []byte("long name"),
		"docs/" + "same-name.txt":  []byte("a"),
		"other/" + "same-name.txt": []byte("b"),
	}
	for name, data := range files {
		writeFile(t, filepath.Join(m.dir, name), data)
	}
	if err := os.Symlink("docs/report.txt", filepath.Join(m.dir, "link")); err != nil {
		t.Fatal(err)
	}
	want := listTree(t, m.dir)
	if len(want) != len(files) { // listTree skips the symlink
		t.Fatalf("mount lists %v", names(want))
	}
	m.stop(t, syscall.SIGTERM)

	// One cipher file, copied out alone, decrypts without the mount.
	var big string
	if err := filepath.Walk(cipher, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > 1<<20 {
			big = p
		}
		return err
	}); err != nil || big == "" {
		t.Fatalf("no large cipher file found: %v", err)
	}
	single := filepath.Join(t.TempDir(), "single.tenc")
	raw, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, single, raw)
	out := filepath.Join(t.TempDir(), "big.out")
	e.ok("file", "decrypt", single, "-o", out)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, files["big.bin"]) {
		t.Error("tencrypt file decrypt of a copied cipher file differs from what was written")
	}

	// Carried elsewhere with tar and with rsync -a, each copy mounts and
	// reads back identically.
	tarred := filepath.Join(t.TempDir(), "tarred")
	if err := os.Mkdir(tarred, 0o700); err != nil {
		t.Fatal(err)
	}
	sh(t, "tar -C "+cipher+" -cf - . | tar -C "+tarred+" -xpf -")
	rsynced := filepath.Join(t.TempDir(), "rsynced")
	sh(t, "rsync -a "+cipher+"/ "+rsynced+"/")
	for _, copyDir := range []string{tarred, rsynced} {
		m := startMount(t, e, copyDir)
		got := listTree(t, m.dir)
		for _, k := range names(want) {
			if !bytes.Equal(got[k], want[k]) {
				t.Errorf("%s: %s differs after the copy", filepath.Base(copyDir), k)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d files, want %d", filepath.Base(copyDir), len(got), len(want))
		}
		if target, err := os.Readlink(filepath.Join(m.dir, "link")); err != nil || target != "docs/report.txt" {
			t.Errorf("symlink: %q, %v", target, err)
		}
		// fusermount3 -u ends the mount process cleanly.
		if out, err := exec.Command("fusermount3", "-u", m.dir).CombinedOutput(); err != nil {
			t.Fatalf("fusermount3 -u: %v %s", err, out)
		}
		m.wait(t)
	}

	// A flipped ciphertext byte reads as EIO through the mount.
	if err := os.Chmod(big, 0o600); err != nil {
		t.Fatal(err)
	}
	raw[len(raw)/2] ^= 1
	if err := os.WriteFile(big, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	m = startMount(t, e, cipher)
	if _, err := os.ReadFile(filepath.Join(m.dir, "big.bin")); !errors.Is(err, syscall.EIO) {
		t.Errorf("reading a tampered file: %v, want EIO", err)
	}
	if b, err := os.ReadFile(filepath.Join(m.dir, "one")); err != nil || string(b) != "1" {
		t.Errorf("an intact file: %q, %v", b, err)
	}
	m.stop(t, syscall.SIGINT)
	if !strings.Contains(m.stderr.String(), "corrupt block") {
		t.Errorf("the mount did not log the corrupt block:\n%s", m.stderr)
	}
}

func sh(t *testing.T, script string) {
	t.Helper()
	if out, err := exec.Command("sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestVolumeInitMode: --root-mode sets the cipher root's permissions (the
// mount's root); the default stays 0700; a mode without the owner's rwx,
// or not octal, is a usage error that creates nothing.
func TestVolumeInitMode(t *testing.T) {
	e := newFileEnv(t)
	for _, tt := range []struct {
		mode string
		want os.FileMode
	}{
		{"", 0o700},
		{"0755", 0o755},
		{"1777", 0o777 | os.ModeSticky | os.ModeDir},
	} {
		cipher := filepath.Join(e.dir, "cipher"+tt.mode)
		args := []string{"volume", "init", cipher, "--tenant", "blue"}
		if tt.mode != "" {
			args = append(args, "--root-mode", tt.mode)
		}
		e.ok(args...)
		fi, err := os.Stat(cipher)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() &^ os.ModeDir; got != tt.want&^os.ModeDir {
			t.Errorf("--root-mode %q: the cipher root is %v, want %v", tt.mode, got, tt.want&^os.ModeDir)
		}
	}
	for _, bad := range []string{"0644", "755x", "17777"} {
		cipher := filepath.Join(e.dir, "bad"+bad)
		e.want(exitcodes.Usage, "volume", "init", cipher, "--tenant", "blue", "--root-mode", bad)
		if _, err := os.Stat(cipher); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("--root-mode %q: %s exists (%v), want nothing created", bad, cipher, err)
		}
	}
}
