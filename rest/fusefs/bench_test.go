package fusefs

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) this process used so far:
// client calls and the file system run in it, so per operation it is a
// figure that a loaded machine disturbs less than the elapsed time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per unit since start.
func reportCPU(b *testing.B, start time.Duration, units int) {
	b.ReportMetric(float64((cpuTime(b)-start).Microseconds())/float64(units), "cpu-us/op")
}

// BenchmarkCreateSmallFiles creates 4 KiB files through the mount (the
// client calls run in this process too).
func BenchmarkCreateSmallFiles(b *testing.B) {
	benchCreateFiles(b, "small")
}

// benchCreateFiles writes b.N files of 4 KiB into the mount's directory
// elems (made first), reporting files/s and CPU per file.
func benchCreateFiles(b *testing.B, elems ...string) {
	w := newWorld(b)
	mnt, _ := w.mount(b)
	data := make([]byte, 4096)
	dir := filepath.Join(append([]string{mnt}, elems...)...)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	for i := range b.N {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%07d", i)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu, b.N)
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

// BenchmarkSequentialRead reads a 128 MiB file through the mount with 1 MiB
// reads; the cipher file stays in the page cache, so this times the FUSE
// and decryption path, not the disk. Each open drops the mount's cache.
func BenchmarkSequentialRead(b *testing.B) {
	w := newWorld(b)
	mnt, _ := w.mount(b)
	p := filepath.Join(mnt, "big")
	const size = 128 << 20
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for range size / len(buf) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		f, err := os.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		for {
			n, err := f.Read(buf)
			if n == 0 || err != nil {
				break
			}
		}
		f.Close()
	}
}

// BenchmarkSequentialWrite writes a 128 MiB file through the mount with
// 1 MiB writes (no fsync).
func BenchmarkSequentialWrite(b *testing.B) {
	w := newWorld(b)
	mnt, _ := w.mount(b)
	buf := make([]byte, 1<<20)
	const size = 128 << 20
	b.SetBytes(size)
	for i := range b.N {
		f, err := os.Create(filepath.Join(mnt, fmt.Sprint("big", i)))
		if err != nil {
			b.Fatal(err)
		}
		for range size / len(buf) {
			if _, err := f.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
		f.Close()
	}
}

// BenchmarkCreateDeepFiles is BenchmarkCreateSmallFiles six directories
// down, where resolving a cipher path walks seven directories.
func BenchmarkCreateDeepFiles(b *testing.B) {
	benchCreateFiles(b, "a", "b", "c", "d", "e", "f")
}

// BenchmarkStatTree lists and stats a tree of 2000 files (four directories
// deep) on a fresh mount each iteration, so every lookup and getattr
// reaches the file system (the kernel caches them 1 s); mounting and
// unmounting are not timed.
func BenchmarkStatTree(b *testing.B) {
	w := newWorld(b)
	mnt, unmount := w.mountOnce(b)
	const dirs, perDir = 5, 400
	for d := range dirs {
		dir := filepath.Join(mnt, "t", "u", "v", fmt.Sprint("d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range perDir {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	unmount()
	b.ResetTimer()
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		m, srv := w.mountOnce(b)
		b.StartTimer()
		start := cpuTime(b)
		n := 0
		err := filepath.WalkDir(m, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			_, err = os.Lstat(p)
			n++
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if n < dirs*perDir {
			b.Fatalf("walked %d entries, want over %d", n, dirs*perDir)
		}
		cpu += cpuTime(b) - start
		b.StopTimer()
		srv()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*dirs*perDir), "cpu-us/op")
	b.ReportMetric(float64(b.N*dirs*perDir)/b.Elapsed().Seconds(), "files/s")
}
