package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// TestFileRandomOps runs random writes, truncates and reads on a File and
// compares every result with a plain byte slice; after each step the whole
// ciphertext must also decrypt as a stream to the same bytes, which checks
// that the final flag moved and the layout stayed canonical.
func TestFileRandomOps(t *testing.T) {
	w := newWorld(t)
	for seed := range uint64(6) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			dek, wk := w.newKey(t)
			defer dek.Zero()
			s := &memStorage{}
			f, err := CreateFile(s, &dek, wk)
			if err != nil {
				t.Fatal(err)
			}
			var model []byte
			r := rand.New(rand.NewPCG(seed, 99))
			for step := range 60 {
				var what string
				switch op := r.IntN(10); {
				case op < 6:
					off := r.IntN(len(model) + 2*BlockSize)
					p := plaintext(r.IntN(3*BlockSize)+1, uint64(step))
					what = fmt.Sprintf("WriteAt(%d bytes at %d)", len(p), off)
					if n, err := f.WriteAt(p, int64(off)); err != nil || n != len(p) {
						t.Fatalf("%s: %d, %v", what, n, err)
					}
					if end := off + len(p); end > len(model) {
						model = append(model, make([]byte, end-len(model))...)
					}
					copy(model[off:], p)
				case op < 8:
					size := r.IntN(len(model) + BlockSize + 1)
					if r.IntN(4) == 0 {
						size = r.IntN(3) * BlockSize // exactly on a boundary, or zero
					}
					what = fmt.Sprintf("Truncate(%d)", size)
					if err := f.Truncate(int64(size)); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					if size > len(model) {
						model = append(model, make([]byte, size-len(model))...)
					}
					model = model[:size]
				default:
					if len(model) == 0 {
						continue
					}
					off := r.IntN(len(model))
					buf := make([]byte, r.IntN(2*BlockSize)+1)
					what = fmt.Sprintf("ReadAt(%d bytes at %d)", len(buf), off)
					n, err := f.ReadAt(buf, int64(off))
					want := min(len(buf), len(model)-off)
					if n != want || !bytes.Equal(buf[:n], model[off:off+n]) || (n < len(buf) && !errors.Is(err, io.EOF)) {
						t.Fatalf("%s = %d, %v; want %d bytes", what, n, err, want)
					}
				}
				if f.Size() != int64(len(model)) {
					t.Fatalf("after %s: size %d, want %d", what, f.Size(), len(model))
				}
				got, err := w.decryptStream(s.b, 0)
				if err != nil || !bytes.Equal(got, model) {
					t.Fatalf("after %s: stream decrypt: %d bytes, %v; want %d bytes", what, len(got), err, len(model))
				}
			}
			// Reopen from storage.
			f2, err := OpenFile(s, int64(len(s.b)), w.unwrap)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, len(model))
			if n, err := f2.ReadAt(buf, 0); n != len(model) || (err != nil && err != io.EOF) || !bytes.Equal(buf, model) {
				t.Fatalf("reopened: %d, %v", n, err)
			}
		})
	}
}

// TestFileReadRejectsTamper checks the random-access path detects a damaged
// block and a cut at a block boundary.
func TestFileReadRejectsTamper(t *testing.T) {
	w := newWorld(t)
	dek, wk := w.newKey(t)
	defer dek.Zero()
	s := &memStorage{}
	f, err := CreateFile(s, &dek, wk)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(plaintext(2*BlockSize+10, 3), 0); err != nil {
		t.Fatal(err)
	}
	l := layoutOf(t, s.b)
	bad := &memStorage{b: flip(s.b, l.block(1)+30)}
	fb, err := OpenFile(bad, int64(len(bad.b)), w.unwrap)
	if err != nil {
		t.Fatal(err)
	}
	var ce *CorruptError
	if _, err := fb.ReadAt(make([]byte, 10), BlockSize+5); !errors.As(err, &ce) || ce.Block != 1 || !errors.Is(err, ErrAuth) {
		t.Fatalf("read of the flipped block: %v", err)
	}
	// A partial write into the damaged block must not launder it.
	if _, err := fb.WriteAt([]byte("y"), BlockSize+5); !errors.Is(err, ErrAuth) {
		t.Fatalf("partial write into the flipped block: %v", err)
	}
	// A cut at a block boundary is caught on open: the last block left was
	// not sealed as final.
	cut := &memStorage{b: bytes.Clone(s.b[:l.block(2)])}
	if _, err := OpenFile(cut, int64(len(cut.b)), w.unwrap); !errors.As(err, &ce) || ce.Block != 1 {
		t.Fatalf("open of a file cut at a boundary: %v", err)
	}
}
