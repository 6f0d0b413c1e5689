package fusefs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkCreateSmallFiles creates 4 KiB files through the mount (the
// client calls run in this process too).
func BenchmarkCreateSmallFiles(b *testing.B) {
	w := newWorld(b)
	mnt, _ := w.mount(b)
	data := make([]byte, 4096)
	dir := filepath.Join(mnt, "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%07d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// BenchmarkTarExtract extracts b.N files of 4 KiB with tar into the mount,
// as scripts/bench-rest does; only the file system runs in this process.
func BenchmarkTarExtract(b *testing.B) {
	w := newWorld(b)
	mnt, _ := w.mount(b)
	src := b.TempDir()
	data := make([]byte, 4096)
	for i := range b.N {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%07d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	tarball := filepath.Join(b.TempDir(), "small.tar")
	if out, err := exec.Command("tar", "-C", src, "-cf", tarball, ".").CombinedOutput(); err != nil {
		b.Fatal(err, string(out))
	}
	if err := os.Mkdir(filepath.Join(mnt, "x"), 0o755); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if out, err := exec.Command("tar", "-C", filepath.Join(mnt, "x"), "-xf", tarball).CombinedOutput(); err != nil {
		b.Fatal(err, string(out))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}
