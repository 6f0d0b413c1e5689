// Package fscrypttest makes throw-away file systems for tests of fscrypt
// volumes: an ext4 image in a temporary file, attached to a loop device and
// mounted, all undone in Cleanup even when the test fails. It needs root,
// mkfs.ext4 (e2fsprogs), losetup and mount (mount); a test that lacks them
// fails with what to install.
package fscrypttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tencrypt/tencrypt/internal/testenv"
)

// imageSize is large enough for ext4 with a journal and a few test files.
const imageSize = 64 << 20

// FS is a loop-mounted file system made by NewExt4.
type FS struct {
	// Dir is the mount point, Image the file behind the loop device.
	Dir, Image string
	dev        string
}

// Ext4 is NewExt4(tb, encrypt).Dir.
func Ext4(tb testing.TB, encrypt bool) string { return NewExt4(tb, encrypt).Dir }

// NewExt4 makes, attaches and mounts a fresh ext4 file system. With
// encrypt, it has the encrypt feature (-O encrypt), which fscrypt needs;
// without, it is the file system a volume must refuse.
func NewExt4(tb testing.TB, encrypt bool) *FS {
	tb.Helper()
	testenv.RequireRoot(tb)
	testenv.RequireTool(tb, "mkfs.ext4", "losetup", "mount", "umount")
	dir := tb.TempDir()
	img := filepath.Join(dir, testenv.Name("ext4-")+".img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Truncate(img, imageSize); err != nil {
		tb.Fatal(err)
	}
	args := []string{"-q", "-F", "-b", "4096"}
	if encrypt {
		args = append(args, "-O", "encrypt")
	}
	run(tb, "mkfs.ext4", append(args, img)...)
	return attach(tb, img, filepath.Join(dir, "mnt"))
}

// attach attaches img to a loop device and mounts it on mnt (made here).
func attach(tb testing.TB, img, mnt string) *FS {
	tb.Helper()
	dev := run(tb, "losetup", "--find", "--show", img)
	tb.Cleanup(func() { runQuiet(tb, "losetup", "-d", dev) })
	if err := os.Mkdir(mnt, 0o700); err != nil {
		tb.Fatal(err)
	}
	f := &FS{Dir: mnt, Image: img, dev: dev}
	f.mount(tb)
	tb.Cleanup(func() {
		// A test that failed with files open still gets its mount
		// removed: lazily, so that the loop device can go too.
		if runQuiet(tb, "umount", mnt) != nil {
			runQuiet(tb, "umount", "-l", mnt)
		}
	})
	return f
}

func (f *FS) mount(tb testing.TB) { tb.Helper(); run(tb, "mount", "-t", "ext4", f.dev, f.Dir) }

// Copy is a copy of the whole file system, as a backup or a move to
// another machine makes it: f is unmounted (which removes every key added
// to it: its volumes are locked), its image copied, f mounted again, and
// the copy attached to its own loop device and mounted elsewhere.
func (f *FS) Copy(tb testing.TB) *FS {
	tb.Helper()
	run(tb, "umount", f.Dir)
	dir := tb.TempDir()
	img := filepath.Join(dir, testenv.Name("ext4-copy-")+".img")
	run(tb, "cp", "--sparse=always", f.Image, img)
	f.mount(tb)
	return attach(tb, img, filepath.Join(dir, "mnt"))
}

func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func runQuiet(tb testing.TB, name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Logf("cleanup: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return err
}
