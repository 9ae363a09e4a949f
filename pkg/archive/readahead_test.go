package archive

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"testing/iotest"
	"time"
)

func TestReadAheadPassesStreamThrough(t *testing.T) {
	data := make([]byte, 3<<20+12345)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct {
		name string
		src  func() io.Reader
		opts ReadAheadOptions
		copy func(io.Reader) ([]byte, error)
	}{
		{"defaults, io.ReadAll", func() io.Reader { return bytes.NewReader(data) }, ReadAheadOptions{}, io.ReadAll},
		{"one small buffer", func() io.Reader { return bytes.NewReader(data) }, ReadAheadOptions{Buffers: 1, BufferSize: 1000}, io.ReadAll},
		{"one-byte source reads", func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data[:100000])) }, ReadAheadOptions{BufferSize: 4096}, io.ReadAll},
		{"odd-sized caller reads", func() io.Reader { return bytes.NewReader(data) }, ReadAheadOptions{BufferSize: 64 << 10},
			func(r io.Reader) ([]byte, error) { return io.ReadAll(iotest.HalfReader(r)) }},
		{"WriteTo", func() io.Reader { return bytes.NewReader(data) }, ReadAheadOptions{BufferSize: 100 << 10},
			func(r io.Reader) ([]byte, error) {
				var b bytes.Buffer
				_, err := r.(io.WriterTo).WriteTo(&b)
				return b.Bytes(), err
			}},
		{"empty stream", func() io.Reader { return bytes.NewReader(nil) }, ReadAheadOptions{}, io.ReadAll},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src()
			want, _ := io.ReadAll(tc.src())
			ra := ReadAhead(src, tc.opts)
			got, err := tc.copy(ra)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d (or contents differ)", len(got), len(want))
			}
			if n, err := ra.Read(make([]byte, 10)); n != 0 || err != io.EOF {
				t.Fatalf("read after the end = %d, %v; want 0, EOF", n, err)
			}
			if err := ra.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReadAheadReturnsSourceErrorAfterData(t *testing.T) {
	boom := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("x"), 5000)), iotest.ErrReader(boom))
	ra := ReadAhead(src, ReadAheadOptions{BufferSize: 1024})
	got, err := io.ReadAll(ra)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if len(got) != 5000 {
		t.Fatalf("got %d bytes before the error, want 5000", len(got))
	}
	if _, err := ra.Read(make([]byte, 1)); !errors.Is(err, boom) {
		t.Fatalf("second read after the error = %v, want it again", err)
	}
	if err := ra.Close(); err != nil {
		t.Fatal(err)
	}
}

// blockingReader returns data once, then blocks until released.
type blockingReader struct {
	release chan struct{}
	reads   int
}

func (b *blockingReader) Read(p []byte) (int, error) {
	b.reads++
	if b.reads == 1 {
		return copy(p, "first"), nil
	}
	<-b.release
	return 0, io.EOF
}

func TestReadAheadCloseWaitsForTheReadInFlight(t *testing.T) {
	before := runtime.NumGoroutine()
	src := &blockingReader{release: make(chan struct{})}
	ra := ReadAhead(src, ReadAheadOptions{BufferSize: 3})
	buf := make([]byte, 3)
	if _, err := io.ReadFull(ra, buf); err != nil || string(buf) != "fir" {
		t.Fatalf("first read = %q, %v", buf, err)
	}
	closed := make(chan struct{})
	go func() {
		_ = ra.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while the source's Read was still running")
	case <-time.After(50 * time.Millisecond):
	}
	close(src.release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return after the source's Read did")
	}
	if err := ra.Close(); err != nil { // a second Close is harmless
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after Close, %d before", n, before)
	}
}

func TestReadAheadCloseStopsAFullPipeline(t *testing.T) {
	// An endless source: the filler is blocked handing over a buffer
	// nobody reads when Close comes.
	ra := ReadAhead(zeros{}, ReadAheadOptions{Buffers: 2, BufferSize: 16})
	if _, err := ra.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = ra.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs while the pipeline is full")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
