package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tencrypt/tencrypt/keys"
)

// goldenFiles loads the golden files, the only inputs that may decrypt
// under the golden key.
func goldenFiles(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	for _, n := range []int{0, 1, 4096, 4097, 5000} {
		b, err := os.ReadFile(filepath.Join("testdata", fmt.Sprintf("golden-v1-%d.tenc", n)))
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzParseHeader checks that ParseHeader never panics, fails only with its
// sentinels, and accepts only headers it would write back byte for byte.
func FuzzParseHeader(f *testing.F) {
	for _, g := range goldenFiles(f) {
		h, err := ReadHeader(bytes.NewReader(g))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(h.Bytes())
	}
	f.Add([]byte("TENC"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrNotTencrypt) && !errors.Is(err, ErrUnknownVersion) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if h.Size() != len(b) || !bytes.Equal(h.Bytes(), b) {
			t.Fatal("accepted header does not encode back to its input")
		}
		nh, err := newHeader(h.FileID, h.Key)
		if err != nil || !bytes.Equal(nh.authenticated(), h.authenticated()) {
			t.Fatalf("re-encoding the parsed fields differs: %v", err)
		}
		if _, err := ReadHeader(bytes.NewReader(b)); err != nil {
			t.Fatalf("ReadHeader rejects what ParseHeader accepts: %v", err)
		}
	})
}

// FuzzOpenBlock feeds arbitrary sealed blocks, positions and final flags to
// the block opener under the golden 5000-byte file's key: only that file's
// own blocks, at their own positions and flags, may open.
func FuzzOpenBlock(f *testing.F) {
	g := goldenFiles(f)[4]
	h, err := ReadHeader(bytes.NewReader(g))
	if err != nil {
		f.Fatal(err)
	}
	dek, _ := goldenKey()
	k, err := deriveKeys(&dek, h, nil)
	if err != nil {
		f.Fatal(err)
	}
	body := g[h.Size():]
	blocks := [][]byte{body[:SealedBlockSize], body[SealedBlockSize:]}
	f.Add(blocks[0], uint64(0), false)
	f.Add(blocks[1], uint64(1), true)
	f.Add(blocks[1], uint64(0), true)
	f.Add(blocks[0], uint64(0), true)
	f.Fuzz(func(t *testing.T, sealed []byte, n uint64, final bool) {
		ad := newBlockAD(h)
		pt, err := k.content.OpenBlock(nil, sealed, ad.set(int64(n), final))
		if err != nil {
			if pt != nil {
				t.Fatal("plaintext returned with an error")
			}
			return
		}
		if n > 1 || !bytes.Equal(sealed, blocks[n]) || final != (n == 1) {
			t.Fatalf("a block opened that the golden file does not have at %d (final %v)", n, final)
		}
	})
}

// FuzzReader decrypts arbitrary input under the golden key with both
// readers: only a golden file may decrypt without error, and whatever is
// returned before an error is a prefix of a golden plaintext.
func FuzzReader(f *testing.F) {
	gs := goldenFiles(f)
	for _, g := range gs {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		isGolden := false
		for _, g := range gs {
			isGolden = isGolden || bytes.Equal(g, data)
		}
		var got []byte
		r, err := NewReader(bytes.NewReader(data), goldenUnwrap)
		if err == nil {
			got, err = io.ReadAll(r)
		}
		check := func(how string, got []byte, err error) {
			if err == nil && !isGolden {
				t.Fatalf("%s: a non-golden input decrypted", how)
			}
			if isGolden && err != nil {
				t.Fatalf("%s: golden input failed: %v", how, err)
			}
			if !bytes.Equal(got, goldenPlaintext(len(got))) {
				t.Fatalf("%s: returned bytes that are no golden plaintext", how)
			}
			if err != nil && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrNotTencrypt) && !errors.Is(err, ErrUnknownVersion) &&
				!errors.Is(err, ErrMalformed) && !errors.Is(err, keys.ErrAuth) {
				t.Fatalf("%s: error wraps no sentinel: %v", how, err)
			}
		}
		check("Reader", got, err)
		ra, err := OpenReaderAt(bytes.NewReader(data), int64(len(data)), goldenUnwrap)
		got = nil
		if err == nil {
			buf := make([]byte, ra.Size())
			var n int
			n, err = ra.ReadAt(buf, 0)
			if err == io.EOF {
				err = nil
			}
			got = buf[:n]
		}
		check("ReaderAt", got, err)
	})
}
