package format

import (
	"fmt"
	"io"

	"github.com/tencrypt/tencrypt/keys"
)

// writeBatch is how many sealed blocks a Writer gathers before one write to
// the underlying writer: fewer system calls, and still a small buffer.
const writeBatch = 32

// Writer encrypts a stream into the file format. It holds back the last
// full block it was given until it knows whether more follows, so that the
// last block written is the one marked final; Close seals it. Writer is
// not safe for concurrent use.
type Writer struct {
	w    io.Writer
	keys *fileKeys
	hdr  *Header
	ad   blockAD

	block   int64  // number of the next block to seal
	pending []byte // plaintext not yet sealed, at most BlockSize bytes
	out     []byte // sealed bytes not yet written
	err     error  // sticky: once a write failed, every call fails
	closed  bool
}

// NewWriter returns a Writer that encrypts to w under dek, whose wrapped
// form wk goes into the header (its purpose must be Purpose). It draws a
// fresh file ID. The caller keeps dek and may zero it once NewWriter
// returns; the Writer keeps only derived subkeys. Nothing is written to w
// before the first Write or Close.
func NewWriter(w io.Writer, dek *keys.DEK, wk keys.WrappedKey, opts ...Option) (*Writer, error) {
	k, h, err := newFileKeys(dek, wk, getOptions(opts))
	if err != nil {
		return nil, err
	}
	wr := &Writer{
		w: w, keys: k, hdr: h, ad: newBlockAD(h),
		pending: make([]byte, 0, BlockSize),
		out:     make([]byte, 0, h.Size()+writeBatch*SealedBlockSize),
	}
	wr.out = append(wr.out, h.Bytes()...)
	return wr, nil
}

// newFileKeys starts a new file under dek: a fresh file ID, the header
// carrying wk, sealed, and the derived subkeys.
func newFileKeys(dek *keys.DEK, wk keys.WrappedKey, o options) (*fileKeys, *Header, error) {
	if wk.Purpose != Purpose {
		return nil, nil, fmt.Errorf("file header: %w: wrapped key for purpose %q, not %q", keys.ErrMismatch, wk.Purpose, Purpose)
	}
	var id [FileIDSize]byte
	if _, err := io.ReadFull(o.random, id[:]); err != nil {
		return nil, nil, fmt.Errorf("file ID: %w", err)
	}
	h, err := newHeader(id, wk)
	if err != nil {
		return nil, nil, err
	}
	k, err := deriveKeys(dek, h, o.random)
	if err != nil {
		return nil, nil, err
	}
	if err := k.sealHeader(h); err != nil {
		return nil, nil, err
	}
	return k, h, nil
}

// Header returns the header the Writer writes.
func (w *Writer) Header() *Header { return w.hdr }

// Write encrypts p. Sealed blocks reach the underlying writer in batches;
// the last block is written by Close.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, fmt.Errorf("format: write after Close")
	}
	n := len(p)
	for len(p) > 0 {
		if len(w.pending) == BlockSize {
			// More data follows, so the held block is not the last.
			if err := w.seal(w.pending, false); err != nil {
				return n - len(p), err
			}
			w.pending = w.pending[:0]
		}
		if len(w.pending) == 0 && len(p) > BlockSize {
			// Seal straight from p: it is full and not the last.
			if err := w.seal(p[:BlockSize], false); err != nil {
				return n - len(p), err
			}
			p = p[BlockSize:]
			continue
		}
		c := copy(w.pending[len(w.pending):BlockSize], p)
		w.pending = w.pending[:len(w.pending)+c]
		p = p[c:]
	}
	return n, nil
}

// seal seals one block into the output batch, flushing a full batch.
func (w *Writer) seal(pt []byte, final bool) error {
	if w.block >= MaxBlocks {
		w.err = ErrTooLarge
		return w.err
	}
	if cap(w.out)-len(w.out) < SealedBlockSize {
		if err := w.flush(); err != nil {
			return err
		}
	}
	out, err := w.keys.content.SealBlock(w.out, pt, w.ad.set(w.block, final))
	if err != nil {
		w.err = err
		return err
	}
	w.out = out
	w.block++
	return nil
}

func (w *Writer) flush() error {
	if len(w.out) == 0 {
		return nil
	}
	if _, err := w.w.Write(w.out); err != nil {
		w.err = fmt.Errorf("write encrypted data: %w", err)
		return w.err
	}
	w.out = w.out[:0]
	return nil
}

// Close seals the final block (empty for an empty file) and writes what is
// left. It does not close the underlying writer. The output is complete only
// if Close returns nil.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.seal(w.pending, true); err != nil {
		return err
	}
	clear(w.pending)
	return w.flush()
}

// Blocks is the number of blocks sealed so far.
func (w *Writer) Blocks() int64 { return w.block }
