package filecrypt

import (
	"io"
	"sync/atomic"
)

// asyncWriter hands writes to a goroutine, so that the kernel's side of
// write(2) (copying into the page cache, allocating pages) runs on the other
// core while the caller encrypts or decrypts the next buffer: without it a
// file's write cost adds to the crypto cost instead of overlapping it
// (measured with 'tencrypt file bench', docs/BENCHMARKS.md). The copy into
// its own buffers is the price. After a write error it keeps taking buffers
// without writing them, so Write never blocks, and reports the error.
type asyncWriter struct {
	w      io.Writer
	cur    []byte
	free   chan []byte
	full   chan []byte
	done   chan struct{}
	err    error       // written by the goroutine before failed is set
	failed atomic.Bool // a write failed
	closed bool
}

const (
	asyncBufSize = 1 << 20
	asyncBufs    = 3
)

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, free: make(chan []byte, asyncBufs), full: make(chan []byte, asyncBufs), done: make(chan struct{})}
	for range asyncBufs - 1 {
		a.free <- make([]byte, 0, asyncBufSize)
	}
	a.cur = make([]byte, 0, asyncBufSize)
	go a.run()
	return a
}

func (a *asyncWriter) run() {
	defer close(a.done)
	for b := range a.full {
		if !a.failed.Load() {
			if _, err := a.w.Write(b); err != nil {
				a.err = err
				a.failed.Store(true)
			}
		}
		a.free <- b[:0]
	}
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	if a.failed.Load() {
		return 0, a.err
	}
	n := len(p)
	for len(p) > 0 {
		c := min(len(p), cap(a.cur)-len(a.cur))
		a.cur = append(a.cur, p[:c]...)
		p = p[c:]
		if len(a.cur) == cap(a.cur) {
			a.full <- a.cur
			a.cur = <-a.free
		}
	}
	return n, nil
}

// Close writes what is buffered, stops the goroutine and returns the first
// write error. It does not close the underlying writer.
func (a *asyncWriter) Close() error {
	if !a.closed {
		a.closed = true
		if len(a.cur) > 0 {
			a.full <- a.cur
		}
		close(a.full)
	}
	<-a.done
	return a.err
}

// asyncReader reads ahead on a goroutine, so that the kernel's side of
// read(2) overlaps the caller's crypto, as asyncWriter does for writes.
// Close stops the goroutine (unless it is blocked in a read of its own).
type asyncReader struct {
	full chan readChunk
	free chan []byte
	stop chan struct{}
	cur  []byte
	pos  int
	err  error
}

type readChunk struct {
	b   []byte
	err error
}

func newAsyncReader(r io.Reader) *asyncReader {
	a := &asyncReader{full: make(chan readChunk, asyncBufs), free: make(chan []byte, asyncBufs), stop: make(chan struct{})}
	for range asyncBufs {
		a.free <- make([]byte, asyncBufSize)
	}
	go func() {
		for {
			var b []byte
			select {
			case b = <-a.free:
			case <-a.stop:
				return
			}
			n, err := r.Read(b[:cap(b)])
			select {
			case a.full <- readChunk{b[:n], err}:
			case <-a.stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a
}

func (a *asyncReader) Read(p []byte) (int, error) {
	for a.pos == len(a.cur) {
		if a.err != nil {
			return 0, a.err
		}
		if a.cur != nil {
			a.free <- a.cur
		}
		c := <-a.full
		a.cur, a.pos, a.err = c.b, 0, c.err
	}
	n := copy(p, a.cur[a.pos:])
	a.pos += n
	return n, nil
}

func (a *asyncReader) Close() { close(a.stop) }
