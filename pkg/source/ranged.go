package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"k8s.io/klog/v2"
)

// errClosed is what a rangedReader returns once closed.
var errClosed = errors.New("read from a closed blob reader")

// rangedReader reassembles, in order, a blob fetched as parallel range
// requests: a registry (or the object store behind it) often caps what
// one connection gets, and several connections of a large blob get more.
//
// The blob is cut into chunks of cfg.chunkSize bytes. A window of
// cfg.connections slots holds chunks head through head+connections-1; each
// slot has a buffer of one chunk and one goroutine filling it from a
// request of its own, while the consumer reads the head chunk as its bytes
// arrive, so decompression starts with the first bytes of the blob. When the
// consumer has read the head chunk, its slot passes to chunk
// head+connections. So, however slow the consumer, at most connections
// requests are in flight and at most connections × chunkSize bytes are
// buffered per blob (32 MiB with the defaults): a goroutine that has filled
// its chunk ends, and the next one for that slot starts only when the
// consumer gets there.
//
// Read is for one goroutine; Close may be called from another, and stops and
// waits for every goroutine the reader started.
type rangedReader struct {
	f      *blobFetch
	ctx    context.Context // cancelled by Close or the first failure
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
	chunks int64

	mu    sync.Mutex
	ready *sync.Cond // broadcast when the head chunk gains bytes or err is set
	slots []*slot
	head  int64 // the chunk being read
	off   int   // bytes of it read
	err   error // the first failure, or errClosed; sticky
}

type slot struct {
	buf []byte // the chunk's bytes; its capacity is reused by later chunks
	// got counts the bytes in buf, guarded by rangedReader.mu. It reaches
	// len(buf) only once the response has been seen to end there.
	got int
}

// newRangedReader starts the fetch; first is the 206 answer to the
// request for chunk 0, made with ctx, which cancel cancels.
func newRangedReader(ctx context.Context, cancel context.CancelCauseFunc, f *blobFetch, first *http.Response) *rangedReader {
	chunks := (f.desc.Size + f.cfg.chunkSize - 1) / f.cfg.chunkSize
	r := &rangedReader{f: f, ctx: ctx, cancel: cancel, chunks: chunks,
		slots: make([]*slot, min(int64(f.cfg.connections), chunks))}
	r.ready = sync.NewCond(&r.mu)
	klog.FromContext(ctx).V(4).Info("Fetching blob in ranges", "digest", f.desc.Digest, "size", f.desc.Size,
		"chunks", chunks, "connections", len(r.slots))
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.slots {
		r.slots[i] = &slot{}
		resp := first
		if i > 0 {
			resp = nil
		}
		r.start(int64(i), resp)
	}
	return r
}

// start hands chunk i its slot and a goroutine. r.mu is held.
func (r *rangedReader) start(i int64, resp *http.Response) {
	s := r.slots[i%int64(len(r.slots))]
	first := i * r.f.cfg.chunkSize
	n := int(min(r.f.cfg.chunkSize, r.f.desc.Size-first))
	if cap(s.buf) < n {
		s.buf = make([]byte, n)
	}
	s.buf, s.got = s.buf[:n], 0
	buf := s.buf // s.buf changes only once this chunk is full and read
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.f.fillRange(r.ctx, first, buf, resp, func(got int) {
			r.mu.Lock()
			s.got = got
			head := r.head == i // only the head chunk's bytes can be waited for
			r.mu.Unlock()
			if head {
				r.ready.Broadcast()
			}
		})
		if err != nil {
			r.fail(err)
		}
	}()
}

// fail records the first error, which every later Read returns, and stops
// the other requests: the blob is lost either way.
func (r *rangedReader) fail(err error) {
	r.mu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.mu.Unlock()
	r.cancel(err)
	r.ready.Broadcast()
}

func (r *rangedReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.head == r.chunks {
			return 0, io.EOF
		}
		s := r.slots[r.head%int64(len(r.slots))]
		if r.off < s.got {
			n := copy(p, s.buf[r.off:s.got])
			r.off += n
			if r.off == len(s.buf) {
				if next := r.head + int64(len(r.slots)); next < r.chunks {
					r.start(next, nil)
				}
				r.head, r.off = r.head+1, 0
			}
			return n, nil
		}
		// Some goroutine owns the head chunk until it is full or failed,
		// and either wakes us.
		r.ready.Wait()
	}
}

// Close stops the fetch and returns once every goroutine has ended.
func (r *rangedReader) Close() error {
	r.fail(errClosed)
	r.wg.Wait()
	return nil
}

// fillRange fills buf with the blob's bytes from first on, reading resp
// if it is not nil (the 206 for exactly those bytes) and requesting what is
// missing otherwise, resuming from the byte reached after a drop. progress
// is told how many bytes are in buf as they come; it hears len(buf) only
// after the response was seen to end there.
func (f *blobFetch) fillRange(ctx context.Context, first int64, buf []byte, resp *http.Response, progress func(int)) error {
	last := first + int64(len(buf)) - 1
	got, resumes := 0, 0
	for {
		if resp == nil {
			var err error
			resp, err = f.get(ctx, first+int64(got), last)
			if err == nil && resp.StatusCode != http.StatusPartialContent {
				err = fmt.Errorf("GET bytes %d-%d: the registry answered with %s after it had answered ranges",
					first+int64(got), last, resp.Status)
				drop(resp)
				resp = nil
			}
			if err != nil {
				if err := f.retry(ctx, err, first+int64(got), resumes); err != nil {
					return err
				}
				resumes++
				continue
			}
		}
		var err error
		for got < len(buf) && err == nil {
			var n int
			n, err = resp.Body.Read(buf[got:])
			got += n
			if n > 0 && got < len(buf) {
				progress(got)
			}
		}
		if got == len(buf) {
			err := expectEnd(resp.Body)
			drop(resp)
			if err != nil {
				return fmt.Errorf("GET bytes %d-%d: %w", first, last, err)
			}
			progress(got)
			return nil
		}
		drop(resp)
		resp = nil
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a body without Content-Length that stopped short
		}
		if err := f.retry(ctx, &errDropped{off: first + int64(got), err: err}, first+int64(got), resumes); err != nil {
			return err
		}
		resumes++
	}
}

// expectEnd checks that a body which delivered every byte asked for has
// nothing more: a server that sends more than the range is broken, and its
// bytes must not pass for the blob's.
func expectEnd(body io.Reader) error {
	var b [1]byte
	for range 100 { // a Read may return 0, nil; not forever
		n, err := body.Read(b[:])
		if n > 0 {
			return errors.New("the registry sent more than the bytes asked for")
		}
		if err != nil {
			return nil // EOF, or a failure after the last byte wanted: nothing more comes
		}
	}
	return errors.New("the response did not end after the bytes asked for")
}
