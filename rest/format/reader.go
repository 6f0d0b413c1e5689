package format

import (
	"errors"
	"fmt"
	"io"
)

// readBatch is how many sealed blocks a Reader reads ahead.
const readBatch = 32

// Reader decrypts a stream in the file format. It returns a block's
// plaintext only after the block authenticated, and it ends with io.EOF
// only after the block marked final; a stream that ends without it fails
// with a CorruptError. Reader is not safe for concurrent use.
//
// Blocks are opened on the caller's goroutine: splitting a batch over two
// goroutines was measured on the 2-vCPU test machine and made decryption
// slower (BenchmarkDecrypt ratio 0.69 -> 0.57), so it was not kept.
type Reader struct {
	r    io.Reader
	keys *fileKeys
	hdr  *Header
	ad   blockAD
	path string

	block int64  // number of the next block to open
	cbuf  []byte // ciphertext read ahead: cbuf[cpos:] is unread
	cpos  int
	eof   bool   // r returned io.EOF
	plain []byte // authenticated plaintext not yet returned: plain[ppos:]
	ppos  int
	final bool  // the final block was opened
	err   error // sticky, returned once plain is drained
}

// NewReader reads the header from r, unwraps its key with unwrap, and
// checks the header's seal. The returned Reader decrypts the rest of r.
func NewReader(r io.Reader, unwrap Unwrapper, opts ...Option) (*Reader, error) {
	o := getOptions(opts)
	h, err := ReadHeader(r)
	if err != nil {
		return nil, pathError(o.path, err)
	}
	k, err := openHeader(h, unwrap, o)
	if err != nil {
		return nil, err
	}
	return &Reader{
		r: r, keys: k, hdr: h, ad: newBlockAD(h), path: o.path,
		cbuf:  make([]byte, 0, readBatch*SealedBlockSize+1),
		plain: make([]byte, 0, readBatch*BlockSize),
	}, nil
}

// pathError prefixes a header error with the file's path, if known.
func pathError(path string, err error) error {
	if path == "" {
		return err
	}
	return fmt.Errorf("%s: %w", path, err)
}

// Header returns the file's header.
func (r *Reader) Header() *Header { return r.hdr }

// Read returns authenticated plaintext. Whole blocks are opened straight
// into p when it has room for them.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.ppos == len(r.plain) {
		if r.err != nil {
			return 0, r.err
		}
		if r.final {
			return 0, io.EOF
		}
		if len(p) >= BlockSize {
			out, err := r.openInto(p[:0:len(p)])
			if len(out) == 0 && err != nil {
				return 0, err
			}
			r.err = err
			return len(out), nil
		}
		out, err := r.openInto(r.plain[:0])
		r.plain, r.ppos, r.err = out, 0, err
		if len(out) == 0 {
			if err != nil {
				return 0, err
			}
			if r.final {
				return 0, io.EOF
			}
		}
	}
	n := copy(p, r.plain[r.ppos:])
	r.ppos += n
	return n, nil
}

// fill reads until at least one block can be opened: more than a sealed
// block is buffered (so the first one is not the last), or r ended.
func (r *Reader) fill() error {
	if r.cpos > 0 {
		n := copy(r.cbuf[:cap(r.cbuf)], r.cbuf[r.cpos:])
		r.cbuf, r.cpos = r.cbuf[:n], 0
	}
	for !r.eof && len(r.cbuf) <= SealedBlockSize {
		n, err := r.r.Read(r.cbuf[len(r.cbuf):cap(r.cbuf)])
		r.cbuf = r.cbuf[:len(r.cbuf)+n]
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else if err != nil {
			return fmt.Errorf("%s: read encrypted data: %w", displayPath(r.path), err)
		}
	}
	return nil
}

// openInto opens as many buffered blocks as fit in dst's capacity (at least
// one, reading more if needed) and appends their plaintext. It returns what
// authenticated before any error.
func (r *Reader) openInto(dst []byte) ([]byte, error) {
	if err := r.fill(); err != nil {
		return dst, err
	}
	for cap(dst)-len(dst) >= BlockSize {
		rest := r.cbuf[r.cpos:]
		var final bool
		var sealed []byte
		switch {
		case len(rest) > SealedBlockSize:
			sealed = rest[:SealedBlockSize]
		case !r.eof:
			return dst, nil // need more input to know whether this block is the last
		case len(rest) == 0:
			return dst, &CorruptError{Path: r.path, Block: r.block, Reason: reasonTruncated}
		case len(rest) < BlockOverhead:
			return dst, &CorruptError{Path: r.path, Block: r.block, Reason: reasonShortBlock}
		case len(rest) == BlockOverhead && r.block > 0:
			return dst, &CorruptError{Path: r.path, Block: r.block, Reason: reasonEmptyFinal}
		default:
			sealed, final = rest, true
		}
		out, err := r.keys.content.OpenBlock(dst, sealed, r.ad.set(r.block, final))
		if err != nil {
			return dst, &CorruptError{Path: r.path, Block: r.block, Reason: reasonAuth}
		}
		dst = out
		r.cpos += len(sealed)
		r.block++
		if final {
			r.final = true
			return dst, nil
		}
	}
	return dst, nil
}

// WriteTo decrypts the rest of the stream into w, for io.Copy.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if r.ppos < len(r.plain) {
		n, err := w.Write(r.plain[r.ppos:])
		r.ppos += n
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	for !r.final && r.err == nil {
		out, err := r.openInto(r.plain[:0])
		r.plain, r.ppos, r.err = out, len(out), err
		if len(out) > 0 {
			n, werr := w.Write(out)
			total += int64(n)
			if werr != nil {
				return total, werr
			}
		}
	}
	return total, r.err
}
