package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkListDir lists a directory of 1000 files through the mount: each
// listing reaches the file system (no directory cache), which decrypts
// every name. Reports names listed per second.
func BenchmarkListDir(b *testing.B) {
	w := newWorld(b)
	mnt, _ := w.mount(b)
	dir := filepath.Join(mnt, "list")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	const files = 1000
	for i := range files {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file-%04d.txt", i)), nil, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != files {
			b.Fatalf("listed %d entries, %v", len(ents), err)
		}
	}
	b.ReportMetric(float64(b.N*files)/b.Elapsed().Seconds(), "names/s")
}
