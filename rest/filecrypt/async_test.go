package filecrypt

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"syscall"
	"testing"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n += len(p); f.n > 3<<20 {
		return 0, syscall.ENOSPC
	}
	return len(p), nil
}

func TestAsyncWriterReportsErrors(t *testing.T) {
	a := newAsyncWriter(&failingWriter{})
	buf := make([]byte, 100000)
	var err error
	for i := 0; i < 200 && err == nil; i++ {
		_, err = a.Write(buf)
	}
	if cerr := a.Close(); !errors.Is(cerr, syscall.ENOSPC) {
		t.Fatalf("Close: %v, want ENOSPC (Write said %v)", cerr, err)
	}
	var out bytes.Buffer
	a = newAsyncWriter(&out)
	want := randomBytes(5<<20+3, 1)
	for p := want; len(p) > 0; p = p[min(len(p), 70000):] {
		if _, err := a.Write(p[:min(len(p), 70000)]); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(); err != nil || !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("round trip through asyncWriter: %v", err)
	}
}

func TestAsyncReader(t *testing.T) {
	want := randomBytes(3<<20+5, 2)
	a := newAsyncReader(bytes.NewReader(want))
	defer a.Close()
	got, err := io.ReadAll(a)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("asyncReader: %v", err)
	}
	// Close while the goroutine is ahead must not leak or block.
	b := newAsyncReader(bytes.NewReader(want))
	if _, err := b.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	b.Close()
}

func TestProcessUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	if got := Umask(); got != 0o027 {
		t.Errorf("Umask = %#o, want 0o027", got)
	}
}
