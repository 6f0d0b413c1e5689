package filecrypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tencrypt/tencrypt/internal/cryptocore"
	"github.com/tencrypt/tencrypt/keys"
	"github.com/tencrypt/tencrypt/rest/format"
)

// BenchResult is what Bench measured; rates in MB/s (10^6 bytes). The json
// names are a contract ('tencrypt file bench --json', scripts/bench-format).
type BenchResult struct {
	Bytes       int64   `json:"bytes"`
	Dir         string  `json:"dir"`
	Runs        int     `json:"runs"`
	EncryptMBps float64 `json:"encrypt_mb_per_s"`
	DecryptMBps float64 `json:"decrypt_mb_per_s"`
	RawSealMBps float64 `json:"raw_aes_gcm_seal_mb_per_s"`
	RawOpenMBps float64 `json:"raw_aes_gcm_open_mb_per_s"`
	// CopyMBps is a plain copy of the file through the same I/O path: the
	// rate the disk and kernel allow without any crypto.
	CopyMBps     float64 `json:"copy_mb_per_s"`
	EncryptRatio float64 `json:"encrypt_ratio"`
	DecryptRatio float64 `json:"decrypt_ratio"`
}

// Bench writes a random file of size bytes in a temporary directory under
// parent and, runs times each, encrypts it to a file and decrypts that back
// through the path Encrypt and Decrypt take (read-ahead, temporary file,
// fsync, rename), copies it the same way without crypto, and seals and
// opens as many bytes with raw AES-256-GCM in 4 KiB blocks, alternating so
// that a busy machine slows both alike. It reports the best run of each. The
// key is random and never touches a key backend. The directory is removed.
func Bench(ctx context.Context, parent string, size int64, runs int) (res BenchResult, err error) {
	if size < 1 || runs < 1 {
		return res, usagef("file bench: the size and the runs must be at least 1")
	}
	dir, err := os.MkdirTemp(parent, "tencrypt-bench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	src, enc, dec := filepath.Join(dir, "src"), filepath.Join(dir, "src.tenc"), filepath.Join(dir, "dec")
	err = WriteAtomic(src, 0o600, false, func(w io.Writer) error {
		_, err := io.CopyN(w, rand.Reader, size)
		return err
	})
	if err != nil {
		return res, err
	}
	var dek keys.DEK
	_, _ = rand.Read(dek[:])
	defer dek.Zero()
	wkct := make([]byte, 60)
	_, _ = rand.Read(wkct)
	wk := keys.WrappedKey{Provider: "bench", Tenant: "bench", Purpose: format.Purpose, KEKVersion: 1, Ciphertext: wkct}
	unwrap := func(keys.WrappedKey) (keys.DEK, error) { return dek, nil }

	through := func(from, to string, fn func(in io.Reader, out io.Writer) error) func() error {
		return func() error {
			f, err := os.Open(from)
			if err != nil {
				return err
			}
			defer f.Close()
			in := newAsyncReader(f)
			defer in.Close()
			return WriteAtomic(to, 0o600, true, func(w io.Writer) error { return fn(in, w) })
		}
	}
	encrypt := through(src, enc, func(in io.Reader, out io.Writer) error {
		return encryptWith(ctx, &dek, wk, in, out)
	})
	decrypt := through(enc, dec, func(in io.Reader, out io.Writer) error {
		return DecryptStream(ctx, unwrap, in, out, enc)
	})
	raw := func(seal bool) func() error {
		return func() error {
			g := cryptocore.NewGCMBaseline(format.BlockSize)
			for range size / format.BlockSize {
				if seal {
					g.Seal()
				} else if err := g.Open(); err != nil {
					return err
				}
			}
			return nil
		}
	}
	copyPlain := through(src, filepath.Join(dir, "copy"), func(in io.Reader, out io.Writer) error {
		_, err := io.CopyBuffer(out, ctxReader{ctx, in}, make([]byte, copyBufSize))
		return err
	})
	best, err := bestOf(runs, raw(true), encrypt, raw(false), decrypt, copyPlain)
	if err != nil {
		return res, err
	}
	if err := sameFiles(src, dec); err != nil {
		return res, err
	}
	rate := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	res = BenchResult{Bytes: size, Dir: parent, Runs: runs,
		RawSealMBps: rate(best[0]), EncryptMBps: rate(best[1]), RawOpenMBps: rate(best[2]), DecryptMBps: rate(best[3]), CopyMBps: rate(best[4])}
	res.EncryptRatio = res.EncryptMBps / res.RawSealMBps
	res.DecryptRatio = res.DecryptMBps / res.RawOpenMBps
	return res, nil
}

// bestOf runs each of fns in turn, runs times over, and returns the
// shortest time of each.
func bestOf(runs int, fns ...func() error) ([]time.Duration, error) {
	best := make([]time.Duration, len(fns))
	for range runs {
		for i, fn := range fns {
			start := time.Now()
			err := fn()
			d := time.Since(start)
			if err != nil {
				return nil, err
			}
			if best[i] == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	return best, nil
}

// sameFiles checks the benchmark's round trip.
func sameFiles(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	ba, bb := make([]byte, copyBufSize), make([]byte, copyBufSize)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("BUG: file bench: decrypted file differs from the source")
		}
		if erra != nil || errb != nil {
			return nil
		}
	}
}
