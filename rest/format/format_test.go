package format

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/keys/keystest"
)

// world is a tenant in an in-memory KMS behind a real keys.Envelope.
type world struct {
	env    *keys.Envelope
	tenant string
}

func newWorld(t testing.TB) *world {
	t.Helper()
	m := keystest.NewMemory("local", nil)
	p := m.Admin()
	if err := p.CreateTenant(context.Background(), "blue"); err != nil {
		t.Fatal(err)
	}
	return &world{env: keys.NewEnvelope(p, &keystest.AuditLog{}, time.Now), tenant: "blue"}
}

func (w *world) newKey(t testing.TB) (keys.DEK, keys.WrappedKey) {
	t.Helper()
	dek, wk, err := w.env.NewDEK(context.Background(), w.tenant, Purpose)
	if err != nil {
		t.Fatal(err)
	}
	return dek, wk
}

func (w *world) unwrap(wk keys.WrappedKey) (keys.DEK, error) {
	return w.env.Unwrap(context.Background(), wk, Purpose, "format test")
}

// plaintext returns n deterministic pseudo-random bytes.
func plaintext(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// encrypt encrypts pt under a fresh DEK, writing in chunks of chunk bytes
// (0: one Write).
func (w *world) encrypt(t testing.TB, pt []byte, chunk int) []byte {
	t.Helper()
	dek, wk := w.newKey(t)
	defer dek.Zero()
	return encryptWith(t, &dek, wk, pt, chunk)
}

func encryptWith(t testing.TB, dek *keys.DEK, wk keys.WrappedKey, pt []byte, chunk int, opts ...Option) []byte {
	t.Helper()
	var buf bytes.Buffer
	wr, err := NewWriter(&buf, dek, wk, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if chunk == 0 {
		chunk = max(len(pt), 1)
	}
	for p := pt; len(p) > 0; {
		n := min(chunk, len(p))
		if m, err := wr.Write(p[:n]); err != nil || m != n {
			t.Fatalf("Write: %d, %v", m, err)
		}
		p = p[n:]
	}
	if err := wr.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// decryptStream decrypts with a Reader, reading chunk bytes at a time (0:
// io.ReadAll), and returns what it got before any error.
func (w *world) decryptStream(ct []byte, chunk int) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(ct), w.unwrap, WithPath("f.tenc"))
	if err != nil {
		return nil, err
	}
	if chunk == 0 {
		var out bytes.Buffer
		_, err := io.Copy(&out, r)
		return out.Bytes(), err
	}
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

var sizes = []int{0, 1, 4095, 4096, 4097, 3 * 4096, 5000, 1<<20 + 7}

func TestRoundTrip(t *testing.T) {
	w := newWorld(t)
	for _, size := range sizes {
		pt := plaintext(size, uint64(size))
		for _, wchunk := range []int{0, 1000, 4096, 4097} {
			if size > 100000 && wchunk != 0 && wchunk < 4096 {
				continue // byte-sized chunks of 1 MiB add time, not coverage
			}
			ct := w.encrypt(t, pt, wchunk)
			t.Run(fmt.Sprintf("size%d/write%d", size, wchunk), func(t *testing.T) {
				hdr, err := ParseHeader(ct[:len(ct)-int(CiphertextSize(0, int64(size)))])
				if err != nil {
					t.Fatalf("the file's length does not match its header: %v", err)
				}
				if got, want := int64(len(ct)), CiphertextSize(hdr.Size(), int64(size)); got != want {
					t.Fatalf("ciphertext %d bytes, want %d", got, want)
				}
				if ps, err := PlaintextSize(hdr.Size(), int64(len(ct))); err != nil || ps != int64(size) {
					t.Fatalf("PlaintextSize = %d, %v; want %d", ps, err, size)
				}
				for _, rchunk := range []int{0, 1, 100, 4096, 70000} {
					if size > 100000 && rchunk < 4096 && rchunk != 0 {
						continue
					}
					got, err := w.decryptStream(ct, rchunk)
					if err != nil || !bytes.Equal(got, pt) {
						t.Fatalf("stream read in %d-byte chunks: %d bytes, %v", rchunk, len(got), err)
					}
				}
				ra, err := OpenReaderAt(bytes.NewReader(ct), int64(len(ct)), w.unwrap)
				if err != nil {
					t.Fatal(err)
				}
				if ra.Size() != int64(size) {
					t.Fatalf("ReaderAt size %d, want %d", ra.Size(), size)
				}
				all := make([]byte, size+10)
				n, err := ra.ReadAt(all, 0)
				if n != size || !errors.Is(err, io.EOF) || !bytes.Equal(all[:n], pt) {
					t.Fatalf("ReadAt all: %d, %v", n, err)
				}
				r := rand.New(rand.NewPCG(1, uint64(size)))
				for range 50 {
					if size == 0 {
						break
					}
					off := r.IntN(size)
					l := r.IntN(min(size-off, 3*BlockSize) + 1)
					buf := make([]byte, l)
					if n, err := ra.ReadAt(buf, int64(off)); n != l || (err != nil && !(err == io.EOF && off+l == size)) || !bytes.Equal(buf, pt[off:off+l]) {
						t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", l, off, n, err)
					}
				}
			})
		}
	}
}

// TestEmptyFileHasFinalBlock pins the decision that an empty file is a
// header and one empty final block, so deleting the content is detected.
func TestEmptyFileHasFinalBlock(t *testing.T) {
	w := newWorld(t)
	ct := w.encrypt(t, nil, 0)
	hdr, err := ReadHeader(bytes.NewReader(ct))
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != hdr.Size()+BlockOverhead {
		t.Fatalf("empty file is %d bytes, want header %d + %d", len(ct), hdr.Size(), BlockOverhead)
	}
	if _, err := w.decryptStream(ct[:hdr.Size()], 0); !errors.Is(err, ErrAuth) {
		t.Fatalf("header alone: %v, want ErrAuth", err)
	}
}

func TestWriterRejectsOtherPurpose(t *testing.T) {
	w := newWorld(t)
	dek, wk, err := w.env.NewDEK(context.Background(), w.tenant, "volume")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewWriter(io.Discard, &dek, wk); !errors.Is(err, keys.ErrMismatch) {
		t.Fatalf("got %v, want keys.ErrMismatch", err)
	}
}

func TestUnwrapErrorPassesThrough(t *testing.T) {
	w := newWorld(t)
	ct := w.encrypt(t, []byte("x"), 0)
	denied := func(keys.WrappedKey) (keys.DEK, error) { return keys.DEK{}, keys.ErrPermissionDenied }
	if _, err := NewReader(bytes.NewReader(ct), denied); !errors.Is(err, keys.ErrPermissionDenied) {
		t.Fatalf("got %v", err)
	}
}
