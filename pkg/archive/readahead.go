package archive

import (
	"errors"
	"io"
	"sync"
)

// ReadAheadOptions sizes a ReadAhead pipeline.
type ReadAheadOptions struct {
	// Buffers is how many buffers circulate between the two goroutines:
	// the reader's goroutine fills one while the caller drains another.
	// Default 4.
	Buffers int
	// BufferSize is the size of each buffer. Default 1 MiB.
	BufferSize int
}

const (
	defaultReadAheadBuffers    = 4
	defaultReadAheadBufferSize = 1 << 20
)

// ReadAhead reads r in a goroutine of its own, at most Buffers×BufferSize
// bytes ahead of the caller, so that what produces the stream
// (decompression, and the network and digest checks beneath it) runs on one
// core while what consumes it (extraction and its syscalls, the
// uncompressed digest) runs on another. A layer import is those two halves
// of CPU time; in one goroutine they add up, in two they overlap.
//
// Reads return what r returned, in order, then r's first error (io.EOF at
// the end). Close stops the goroutine and returns once it no longer touches
// r, so r may be closed or inspected after Close; it does not close r. A
// read of r that is blocked (a stalled network) holds Close until it
// returns.
func ReadAhead(r io.Reader, opts ReadAheadOptions) io.ReadCloser {
	if opts.Buffers <= 0 {
		opts.Buffers = defaultReadAheadBuffers
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = defaultReadAheadBufferSize
	}
	ra := &readAhead{
		full:   make(chan []byte, opts.Buffers),
		free:   make(chan []byte, opts.Buffers),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	for range opts.Buffers {
		ra.free <- make([]byte, opts.BufferSize)
	}
	go ra.fill(r)
	return ra
}

type readAhead struct {
	full   chan []byte // filled buffers in stream order; closed after the last
	free   chan []byte // drained buffers, back to the filler
	stop   chan struct{}
	exited chan struct{} // closed when fill returns
	err    error         // r's first error; written before full is closed
	cur    []byte        // unread part of the buffer being drained
	buf    []byte        // the whole of that buffer, to give back
	once   sync.Once
}

func (ra *readAhead) fill(r io.Reader) {
	defer close(ra.exited)
	defer close(ra.full)
	for {
		var buf []byte
		select {
		case buf = <-ra.free:
		case <-ra.stop:
			return
		}
		// ReadFull batches small reads (a decompressor returns what one
		// block holds) into one hand-over per buffer.
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			select {
			case ra.full <- buf[:n]:
			case <-ra.stop:
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF // a short last buffer, not a short stream
			}
			ra.err = err
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	if len(ra.cur) == 0 {
		if ra.buf != nil {
			ra.free <- ra.buf[:cap(ra.buf)] // never blocks: free holds every buffer
			ra.buf = nil
		}
		b, ok := <-ra.full
		if !ok {
			return 0, ra.err
		}
		ra.cur, ra.buf = b, b
	}
	n := copy(p, ra.cur)
	ra.cur = ra.cur[n:]
	return n, nil
}

// WriteTo hands whole buffers to w, so io.Copy to a hash or io.Discard does
// not go through a buffer of its own.
func (ra *readAhead) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		if len(ra.cur) > 0 {
			n, err := w.Write(ra.cur)
			total += int64(n)
			ra.cur = ra.cur[n:]
			if err != nil {
				return total, err
			}
		}
		if _, err := ra.Read(nil); err != nil {
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
	}
}

func (ra *readAhead) Close() error {
	ra.once.Do(func() { close(ra.stop) })
	<-ra.exited
	return nil
}
