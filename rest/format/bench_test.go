package format

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
)

// benchSize is the stream each iteration encrypts or decrypts.
const benchSize = 8 << 20

// rawGCM seals or opens n bytes in 4 KiB blocks with raw AES-256-GCM: the
// machine's baseline rate, measured in the same run.
func rawGCM(g *cryptocore.GCMBaseline, seal bool, n int64) {
	for range n / BlockSize {
		if seal {
			g.Seal()
		} else if err := g.Open(); err != nil {
			panic(err)
		}
	}
}

// vsRaw times f and the raw baseline alternately, each over benchSize bytes
// per iteration, so that the noise of a shared machine hits both alike, and
// reports both rates and their ratio (tencrypt/raw). testing.Benchmark cannot
// run inside a benchmark, hence the hand timing.
func vsRaw(b *testing.B, seal bool, f func()) {
	g := cryptocore.NewGCMBaseline(BlockSize)
	var ours, raw time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		f()
		t1 := time.Now()
		rawGCM(g, seal, benchSize)
		raw += time.Since(t1)
		ours += t1.Sub(t0)
	}
	total := float64(benchSize) * float64(b.N)
	b.ReportMetric(total/ours.Seconds()/1e6, "MB/s")
	b.ReportMetric(total/raw.Seconds()/1e6, "raw-MB/s")
	b.ReportMetric(raw.Seconds()/ours.Seconds(), "ratio")
}

// BenchmarkRawGCMSeal and BenchmarkRawGCMOpen are the baseline on their own,
// for benchstat comparisons.
func BenchmarkRawGCMSeal(b *testing.B) { rawBench(b, true) }
func BenchmarkRawGCMOpen(b *testing.B) { rawBench(b, false) }

func rawBench(b *testing.B, seal bool) {
	g := cryptocore.NewGCMBaseline(BlockSize)
	b.SetBytes(BlockSize)
	b.ReportAllocs()
	for b.Loop() {
		if seal {
			g.Seal()
		} else if err := g.Open(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncrypt streams benchSize bytes through a Writer (io.Copy from a
// reader, as the CLI does), against raw AES-256-GCM seal.
func BenchmarkEncrypt(b *testing.B) {
	w := newWorld(b)
	dek, wk := w.newKey(b)
	defer dek.Zero()
	pt := plaintext(benchSize, 1)
	src := bytes.NewReader(pt)
	vsRaw(b, true, func() {
		src.Reset(pt)
		wr, err := NewWriter(io.Discard, &dek, wk)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(wr, src); err != nil {
			b.Fatal(err)
		}
		if err := wr.Close(); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkDecrypt streams a benchSize-byte file through a Reader into
// io.Discard, against raw AES-256-GCM open.
func BenchmarkDecrypt(b *testing.B) {
	w := newWorld(b)
	ct := w.encrypt(b, plaintext(benchSize, 1), 0)
	src := bytes.NewReader(ct)
	vsRaw(b, false, func() {
		src.Reset(ct)
		r, err := NewReader(src, w.unwrap)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkReadAt reads a file 128 KiB at a time through ReaderAt, as the
// FUSE mount would.
func BenchmarkReadAt(b *testing.B) {
	w := newWorld(b)
	ct := w.encrypt(b, plaintext(benchSize, 1), 0)
	ra, err := OpenReaderAt(bytes.NewReader(ct), int64(len(ct)), w.unwrap)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 128<<10)
	b.SetBytes(benchSize)
	b.ReportAllocs()
	for b.Loop() {
		for off := int64(0); off < benchSize; off += int64(len(buf)) {
			if _, err := ra.ReadAt(buf, off); err != nil && err != io.EOF {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkFileWriteAt overwrites a file 128 KiB at a time through File, as
// the FUSE mount's writes would, against raw AES-256-GCM seal.
func BenchmarkFileWriteAt(b *testing.B) {
	w := newWorld(b)
	dek, wk := w.newKey(b)
	defer dek.Zero()
	s := &memStorage{}
	f, err := CreateFile(s, &dek, wk)
	if err != nil {
		b.Fatal(err)
	}
	chunk := plaintext(128<<10, 2)
	vsRaw(b, true, func() {
		for off := int64(0); off < benchSize; off += int64(len(chunk)) {
			if _, err := f.WriteAt(chunk, off); err != nil {
				b.Fatal(err)
			}
		}
	})
}
