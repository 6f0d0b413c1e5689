package format

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ReaderAt gives random access to the plaintext of an encrypted file. A
// ReadAt reads and opens only the blocks it covers. The file's size comes
// from the caller (the file system's size), so a file cut at a block
// boundary is detected when its last block is read: that block was sealed
// as not final. ReaderAt is safe for concurrent use if ra is.
type ReaderAt struct {
	ra   io.ReaderAt
	keys *fileKeys
	hdr  *Header
	ad   blockAD
	path string
	size int64 // plaintext size
	body int64 // ciphertext size after the header
	last int64 // number of the final block
	bufs sync.Pool
}

// OpenReaderAt reads the header of the size-byte file ra, unwraps its key
// and checks the header's seal.
func OpenReaderAt(ra io.ReaderAt, size int64, unwrap Unwrapper, opts ...Option) (*ReaderAt, error) {
	o := getOptions(opts)
	h, err := ReadHeader(io.NewSectionReader(ra, 0, size))
	if err != nil {
		return nil, pathError(o.path, err)
	}
	ps, err := PlaintextSize(h.Size(), size)
	if err != nil {
		var ce *CorruptError
		if errors.As(err, &ce) {
			ce.Path = o.path
		}
		return nil, err
	}
	k, err := openHeader(h, unwrap, o)
	if err != nil {
		return nil, err
	}
	body := size - int64(h.Size())
	r := &ReaderAt{ra: ra, keys: k, hdr: h, ad: newBlockAD(h), path: o.path, size: ps, body: body, last: (body+SealedBlockSize-1)/SealedBlockSize - 1}
	r.bufs.New = func() any { return &readScratch{cbuf: make([]byte, readBatch*SealedBlockSize)} }
	// Authenticate the final block now: it vouches for the size the caller
	// gave (a file cut at a block boundary, or emptied, fails here), and an
	// empty file would otherwise have no block read at all.
	if err := r.checkFinal(); err != nil {
		return nil, err
	}
	return r, nil
}

// Size is the plaintext size.
func (r *ReaderAt) Size() int64 { return r.size }

// Header returns the file's header.
func (r *ReaderAt) Header() *Header { return r.hdr }

// ReadAt reads len(p) bytes of plaintext at off. As io.ReaderAt requires,
// it returns fewer only with an error: io.EOF at the end of the file, or a
// CorruptError for the first block that did not authenticate, with p
// holding the authenticated bytes before it.
func (r *ReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("format: ReadAt at negative offset %d", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), r.size-off)
	sc := r.bufs.Get().(*readScratch)
	defer r.bufs.Put(sc)
	sc.ad = r.ad // per call: concurrent reads share nothing mutable
	n := 0
	for int64(n) < want {
		pos := off + int64(n)
		first := pos / BlockSize
		// Read up to readBatch sealed blocks at once.
		lastWanted := (off + want - 1) / BlockSize
		count := min(lastWanted-first+1, readBatch)
		cstart := int64(r.hdr.Size()) + first*SealedBlockSize
		clen := min(count*SealedBlockSize, int64(r.hdr.Size())+r.body-cstart)
		cbuf := sc.cbuf[:clen]
		if m, err := r.ra.ReadAt(cbuf, cstart); int64(m) < clen {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("%s: read encrypted data: %w", displayPath(r.path), err)
		}
		for b := first; b < first+count && int64(n) < want; b++ {
			sealed := cbuf[(b-first)*SealedBlockSize:]
			sealed = sealed[:min(len(sealed), SealedBlockSize)]
			pt, err := r.keys.content.OpenBlock(sc.pt[:0], sealed, sc.ad.set(b, b == r.last))
			if err != nil {
				return n, &CorruptError{Path: r.path, Block: b, Reason: reasonAuth}
			}
			inBlock := int((off + int64(n)) - b*BlockSize)
			c := copy(p[n:want], pt[inBlock:])
			n += c
		}
	}
	clear(sc.pt[:])
	if int64(n) < int64(len(p)) {
		return n, io.EOF
	}
	return n, nil
}

// readScratch is the per-call memory of ReadAt, pooled so that reads
// allocate nothing.
type readScratch struct {
	cbuf []byte
	pt   [BlockSize]byte
	ad   blockAD
}

// checkFinal reads and authenticates the final block.
func (r *ReaderAt) checkFinal() error {
	sealed := make([]byte, r.body-r.last*SealedBlockSize)
	if m, err := r.ra.ReadAt(sealed, int64(r.hdr.Size())+r.last*SealedBlockSize); m < len(sealed) {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("%s: read encrypted data: %w", displayPath(r.path), err)
	}
	var scratch [BlockSize]byte
	_, err := r.keys.content.OpenBlock(scratch[:0], sealed, r.ad.set(r.last, true))
	clear(scratch[:])
	if err != nil {
		return &CorruptError{Path: r.path, Block: r.last, Reason: reasonAuth}
	}
	return nil
}
