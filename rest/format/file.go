package format

import (
	"errors"
	"fmt"
	"io"

	"github.com/tencrypt/tencrypt/keys"
)

// Storage is what File needs of the file holding the ciphertext; *os.File
// has it.
type Storage interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
}

// File is read and write random access to an encrypted file, for the FUSE
// mount. A write re-seals only the blocks it touches, each with a fresh
// nonce (read-modify-write for a partial block), and moves the final flag
// when the file grows or shrinks. Growing past the end writes sealed zero
// blocks: a hole is never stored as zeros on disk, so a zeroed region of
// ciphertext is detected instead of read back as zeros. File is not safe
// for concurrent use: the caller serialises calls (one lock per open file).
type File struct {
	s    Storage
	keys *fileKeys
	hdr  *Header
	ad   blockAD
	path string
	size int64 // plaintext size

	pt     [BlockSize]byte       // one block of plaintext
	sealed [SealedBlockSize]byte // one sealed block read back
	// undo holds the final block's plaintext while a write grows the file,
	// to restore the old end if the write fails part-way.
	undo    [BlockSize]byte
	undoLen int
	// out gathers sealed blocks for one WriteAt. It grows with the largest
	// write seen, up to writeBatch blocks, so that a small file (most files
	// made through the mount) never holds a large buffer.
	out []byte
}

// CreateFile writes a new empty encrypted file to s (header and the empty
// final block) under dek, wrapped as wk, and truncates s to that size.
func CreateFile(s Storage, dek *keys.DEK, wk keys.WrappedKey, opts ...Option) (*File, error) {
	o := getOptions(opts)
	k, h, err := newFileKeys(dek, wk, o)
	if err != nil {
		return nil, err
	}
	f := &File{s: s, keys: k, hdr: h, ad: newBlockAD(h), path: o.path}
	// Header and empty final block in one write.
	buf := append(make([]byte, 0, h.Size()+BlockOverhead), h.Bytes()...)
	if buf, err = k.content.SealBlock(buf, nil, f.ad.set(0, true)); err != nil {
		return nil, err
	}
	if _, err := s.WriteAt(buf, 0); err != nil {
		return nil, fmt.Errorf("%s: write the header: %w", displayPath(f.path), err)
	}
	if err := s.Truncate(CiphertextSize(f.hdr.Size(), 0)); err != nil {
		return nil, fmt.Errorf("%s: %w", displayPath(f.path), err)
	}
	return f, nil
}

// OpenFile opens the size-byte encrypted file in s: it reads the header,
// unwraps the key and checks the header's seal.
func OpenFile(s Storage, size int64, unwrap Unwrapper, opts ...Option) (*File, error) {
	r, err := OpenReaderAt(s, size, unwrap, opts...)
	if err != nil {
		return nil, err
	}
	return &File{s: s, keys: r.keys, hdr: r.hdr, ad: r.ad, path: r.path, size: r.size}, nil
}

// Size is the plaintext size.
func (f *File) Size() int64 { return f.size }

// Header returns the file's header.
func (f *File) Header() *Header { return f.hdr }

// lastOf is the number of the final block of a file of size bytes.
func lastOf(size int64) int64 { return max(0, (size+BlockSize-1)/BlockSize-1) }

// blockOffset is where block b starts in the file.
func (f *File) blockOffset(b int64) int64 { return int64(f.hdr.Size()) + b*SealedBlockSize }

// readBlock reads and opens block b of the current file into f.pt and
// returns its plaintext.
func (f *File) readBlock(b int64) ([]byte, error) {
	n := min(BlockSize, f.size-b*BlockSize) + BlockOverhead
	buf := f.sealed[:n]
	if m, err := f.s.ReadAt(buf, f.blockOffset(b)); int64(m) < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%s: read block %d: %w", displayPath(f.path), b, err)
	}
	pt, err := f.keys.content.OpenBlock(f.pt[:0], buf, f.ad.set(b, b == lastOf(f.size)))
	if err != nil {
		return nil, &CorruptError{Path: f.path, Block: b, Reason: reasonAuth}
	}
	return pt, nil
}

// ReadAt reads plaintext as ReaderAt.ReadAt does.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("format: ReadAt at negative offset %d", off)
	}
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		if pos >= f.size {
			return n, io.EOF
		}
		b := pos / BlockSize
		pt, err := f.readBlock(b)
		if err != nil {
			return n, err
		}
		n += copy(p[n:], pt[pos-b*BlockSize:])
	}
	return n, nil
}

// WriteAt writes p at off, growing the file with zeros if off is past its
// end.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("format: WriteAt at negative offset %d", off)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if err := f.writeBlocks(off, off+int64(len(p)), p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Truncate changes the plaintext size, zero-filling when it grows.
func (f *File) Truncate(size int64) error {
	switch {
	case size < 0:
		return fmt.Errorf("format: Truncate to negative size %d", size)
	case size > f.size:
		return f.writeBlocks(f.size, size, nil)
	case size == f.size:
		return nil
	}
	last := lastOf(size)
	// The block that becomes the last one, whole: kept to put it back if
	// the cut fails.
	full, err := f.readBlock(last)
	if err != nil {
		return err
	}
	pt := full[:size-last*BlockSize]
	// Seal the new last block as final before cutting: a crash in between
	// leaves a final block in the middle, which readers reject.
	f.out = f.out[:0]
	out, err := f.keys.content.SealBlock(f.out, pt, f.ad.set(last, true))
	if err != nil {
		return err
	}
	f.out = out
	if _, err := f.s.WriteAt(f.out, f.blockOffset(last)); err != nil {
		return fmt.Errorf("%s: write block %d: %w", displayPath(f.path), last, err)
	}
	if err := f.s.Truncate(CiphertextSize(f.hdr.Size(), size)); err != nil {
		err = fmt.Errorf("%s: %w", displayPath(f.path), err)
		// The cut failed: seal that block again as it was (whole, and not
		// final unless it was the old last one), so the old file stands.
		out, serr := f.keys.content.SealBlock(f.out[:0], full, f.ad.set(last, last == lastOf(f.size)))
		if serr == nil {
			_, serr = f.s.WriteAt(out, f.blockOffset(last))
		}
		if serr != nil {
			return errors.Join(err, fmt.Errorf("restoring block %d also failed, the file is damaged: %w", last, serr))
		}
		return err
	}
	f.size = size
	return nil
}

// writeBlocks makes the plaintext range [off, end) hold p (zeros if p is
// nil) and re-seals every block that changes: the blocks of the range, and
// when the file grows, its old last block (no longer final, zero-padded)
// and the zero blocks between. Partial blocks are read, authenticated and
// merged first.
func (f *File) writeBlocks(off, end int64, p []byte) error {
	newSize := max(f.size, end)
	if newSize > MaxBlocks*BlockSize {
		return fmt.Errorf("%s: %d bytes: %w", displayPath(f.path), newSize, ErrTooLarge)
	}
	oldLast, newLast := lastOf(f.size), lastOf(newSize)
	growing := newSize > f.size
	fail := func(err error) error { return err }
	if growing {
		// Growing re-seals the old final block as not final before the
		// new blocks are all written: a failure part-way (a full disk)
		// would leave a file with no final block, unreadable as a whole.
		// Keep the old final block's plaintext to put the old end back.
		if f.size > 0 {
			pt, err := f.readBlock(oldLast)
			if err != nil {
				return err
			}
			f.undoLen = copy(f.undo[:], pt)
		} else {
			f.undoLen = 0
		}
		fail = f.undoGrow
	}
	first := off / BlockSize
	if growing {
		first = min(first, oldLast)
	}
	lastTouched := newLast
	if !growing {
		lastTouched = (end - 1) / BlockSize
	}
	if need := min(lastTouched-first+1, writeBatch) * SealedBlockSize; int64(cap(f.out)) < need {
		f.out = make([]byte, 0, need)
	}
	f.out = f.out[:0]
	start := first
	for b := first; b <= lastTouched; b++ {
		pt, err := f.mergeBlock(b, off, end, newSize, p, growing && b == oldLast)
		if err != nil {
			return fail(err)
		}
		if cap(f.out)-len(f.out) < SealedBlockSize {
			if err := f.flush(start); err != nil {
				return fail(err)
			}
			start = b
		}
		out, err := f.keys.content.SealBlock(f.out, pt, f.ad.set(b, b == newLast))
		if err != nil {
			return fail(err)
		}
		f.out = out
	}
	if err := f.flush(start); err != nil {
		return fail(err)
	}
	clear(f.pt[:])
	clear(f.undo[:f.undoLen])
	f.size = newSize
	return nil
}

// mergeBlock sets f.pt to block b's new plaintext in a file of newSize
// bytes and returns it: what p (zeros if p is nil), written over the range
// [off, end), puts in the block, and around a partial write the block's
// current content, from f.undo when fromUndo (the old final block of a
// growing file, saved before it was re-sealed) or else read and
// authenticated; past the old end, zeros.
func (f *File) mergeBlock(b, off, end, newSize int64, p []byte, fromUndo bool) ([]byte, error) {
	bStart := b * BlockSize
	bLen := min(BlockSize, newSize-bStart)
	// What the write covers of this block.
	ws, we := max(off, bStart)-bStart, min(end, bStart+bLen)-bStart
	pt := f.pt[:bLen]
	if ws > 0 || we < bLen {
		// A partial write: keep the block's current content.
		var cur []byte
		switch {
		case fromUndo:
			cur = pt[:copy(pt, f.undo[:f.undoLen])]
		case bStart < f.size:
			var err error
			if cur, err = f.readBlock(b); err != nil {
				return nil, err
			}
		}
		clear(pt[len(cur):])
	}
	if ws < we {
		if p == nil {
			clear(pt[ws:we])
		} else {
			copy(pt[ws:we], p[bStart+ws-off:])
		}
	}
	return pt, nil
}

// undoGrow puts back the end of the file as it was before a growing write
// that failed with err: the cipher file cut to its old length (which also
// frees what the write took) and the old final block sealed again as final.
func (f *File) undoGrow(err error) error {
	f.out = f.out[:0]
	defer clear(f.undo[:f.undoLen])
	terr := f.s.Truncate(CiphertextSize(f.hdr.Size(), f.size))
	oldLast := lastOf(f.size)
	sealed, serr := f.keys.content.SealBlock(f.out, f.undo[:f.undoLen], f.ad.set(oldLast, true))
	var werr error
	if serr == nil {
		_, werr = f.s.WriteAt(sealed, f.blockOffset(oldLast))
	}
	if rerr := errors.Join(terr, serr, werr); rerr != nil {
		return errors.Join(err, fmt.Errorf("%s: restoring the previous end of the file also failed, the file is damaged: %w", displayPath(f.path), rerr))
	}
	return err
}

// flush writes the gathered sealed blocks, the first of which is block b.
func (f *File) flush(b int64) error {
	if len(f.out) == 0 {
		return nil
	}
	if _, err := f.s.WriteAt(f.out, f.blockOffset(b)); err != nil {
		return fmt.Errorf("%s: write block %d: %w", displayPath(f.path), b, err)
	}
	f.out = f.out[:0]
	return nil
}
