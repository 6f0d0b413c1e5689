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

// Ext4 makes, attaches and mounts a fresh ext4 file system and returns its
// mount point. With encrypt, it has the encrypt feature (-O encrypt), which
// fscrypt needs; without, it is the file system a volume must refuse.
func Ext4(tb testing.TB, encrypt bool) string {
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
	dev := run(tb, "losetup", "--find", "--show", img)
	tb.Cleanup(func() { runQuiet(tb, "losetup", "-d", dev) })
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		tb.Fatal(err)
	}
	run(tb, "mount", "-t", "ext4", dev, mnt)
	tb.Cleanup(func() {
		// A test that failed with files open still gets its mount
		// removed: lazily, so that the loop device can go too.
		if runQuiet(tb, "umount", mnt) != nil {
			runQuiet(tb, "umount", "-l", mnt)
		}
	})
	return mnt
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
