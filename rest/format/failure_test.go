package format

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
)

// quotaStorage is a memStorage on a disk with limited room: a write that
// would grow it past limit writes what fits, then fails with ENOSPC, as a
// full file system does. failTruncate makes shrinking fail.
type quotaStorage struct {
	memStorage
	limit        int64
	failTruncate bool
}

func (q *quotaStorage) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > q.limit {
		n := max(0, q.limit-off)
		if n > 0 {
			q.memStorage.WriteAt(p[:n], off)
		}
		return int(n), syscall.ENOSPC
	}
	return q.memStorage.WriteAt(p, off)
}

func (q *quotaStorage) Truncate(size int64) error {
	if q.failTruncate && size < int64(len(q.b)) {
		return syscall.EIO
	}
	return q.memStorage.Truncate(size)
}

// readAll decrypts the storage from scratch, as a later open would.
func readAll(t *testing.T, w *world, s *quotaStorage) []byte {
	t.Helper()
	r, err := OpenReaderAt(s, int64(len(s.b)), w.unwrap)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	got := make([]byte, r.Size())
	if _, err := r.ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatalf("read after reopen: %v", err)
	}
	return got
}

// A write that grows a file and fails part-way (disk full) leaves the file
// as it was, readable by the open File and by a fresh reader.
func TestFailedGrowLeavesTheOldFile(t *testing.T) {
	w := newWorld(t)
	for _, size := range []int{0, 1, 4096, 10000} {
		dek, wk := w.newKey(t)
		s := &quotaStorage{limit: 1 << 30}
		f, err := CreateFile(s, &dek, wk)
		if err != nil {
			t.Fatal(err)
		}
		old := plaintext(size, 1)
		if _, err := f.WriteAt(old, 0); err != nil {
			t.Fatal(err)
		}
		s.limit = int64(len(s.b)) + 100 // room for less than one more block
		for name, grow := range map[string]func() error{
			"append": func() error { _, err := f.WriteAt(plaintext(3*BlockSize, 2), int64(size)); return err },
			"write past the end": func() error {
				_, err := f.WriteAt([]byte("x"), int64(size)+5*BlockSize)
				return err
			},
			"truncate up": func() error { return f.Truncate(int64(size) + 9*BlockSize) },
			"overlap and grow": func() error {
				_, err := f.WriteAt(plaintext(2*BlockSize, 3), int64(max(0, size-10)))
				return err
			},
		} {
			if err := grow(); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("size %d, %s: err = %v, want ENOSPC", size, name, err)
			}
			if f.Size() != int64(size) {
				t.Errorf("size %d, %s: File.Size = %d after the failure", size, name, f.Size())
			}
			got := make([]byte, size)
			if n, err := f.ReadAt(got, 0); n != size || (err != nil && err != io.EOF) || !bytes.Equal(got, old) {
				t.Errorf("size %d, %s: the open File reads %d bytes, %v", size, name, n, err)
			}
			if got := readAll(t, w, s); !bytes.Equal(got, old) {
				t.Errorf("size %d, %s: a fresh reader sees %d bytes, not the old content", size, name, len(got))
			}
		}
		// With room again, the same File grows normally.
		s.limit = 1 << 30
		more := plaintext(5000, 4)
		if _, err := f.WriteAt(more, int64(size)); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, w, s); !bytes.Equal(got, append(bytes.Clone(old), more...)) {
			t.Errorf("size %d: the write after the failures is wrong", size)
		}
		dek.Zero()
	}
}

func TestFailedShrinkLeavesTheOldFile(t *testing.T) {
	w := newWorld(t)
	dek, wk := w.newKey(t)
	defer dek.Zero()
	s := &quotaStorage{limit: 1 << 30}
	f, err := CreateFile(s, &dek, wk)
	if err != nil {
		t.Fatal(err)
	}
	old := plaintext(3*BlockSize+7, 1)
	f.WriteAt(old, 0)
	s.failTruncate = true
	for _, to := range []int64{0, 5, BlockSize, 2*BlockSize + 1} {
		if err := f.Truncate(to); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Truncate(%d) = %v, want the storage's EIO", to, err)
		}
		if got := readAll(t, w, s); !bytes.Equal(got, old) {
			t.Errorf("after a failed Truncate(%d) a fresh reader sees %d bytes, not the old content", to, len(got))
		}
	}
}

func TestGrowBeyondTheKeyBudgetRefused(t *testing.T) {
	w := newWorld(t)
	dek, wk := w.newKey(t)
	defer dek.Zero()
	s := &quotaStorage{limit: 1 << 30}
	f, err := CreateFile(s, &dek, wk)
	if err != nil {
		t.Fatal(err)
	}
	before := len(s.b)
	if err := f.Truncate(MaxBlocks*BlockSize + 1); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Truncate past MaxBlocks: %v, want ErrTooLarge", err)
	}
	if _, err := f.WriteAt([]byte("x"), MaxBlocks*BlockSize); !errors.Is(err, ErrTooLarge) {
		t.Errorf("WriteAt past MaxBlocks: %v, want ErrTooLarge", err)
	}
	if len(s.b) != before {
		t.Errorf("a refused grow wrote %d bytes", len(s.b)-before)
	}
}
