package layers

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// countBlobs counts blob downloads per path.
func countBlobs(counts *sync.Map) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				n, _ := counts.LoadOrStore(r.URL.Path, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestConcurrentPullsFetchOnce(t *testing.T) {
	var counts sync.Map
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(countBlobs(&counts)))
	big := mustLayer(t, testimage.Gzip, testimage.File("data", strings.Repeat("layer bytes ", 1<<16)))
	img, _ := testimage.Image(big)
	ref := reg.Push(t, "shared/img:v1", img)
	s := openStore(t, overlay.ModeAuto)

	resolved, err := source.Resolve(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Import(context.Background(), resolved.Layers)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	digest := resolved.Layers[0].Digest.String()
	var fetched int32
	counts.Range(func(k, v any) bool {
		if strings.HasSuffix(k.(string), digest) {
			fetched += v.(*atomic.Int32).Load()
		}
		return true
	})
	if fetched != 1 {
		t.Errorf("blob %s downloaded %d times by 8 concurrent imports, want once", digest, fetched)
	}
}

// corruptBlobs flips one byte of every layer blob: a registry or network
// that serves bytes other than the digest promises. This fault cannot be
// produced by a correct registry, so it is faked here, and named so.
func corruptBlobs(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}}
		next.ServeHTTP(rec, r)
		body := rec.body.Bytes()
		if len(body) > 100 { // layer blobs, not the small config
			body[len(body)/2] ^= 0xff
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.code)
		_, _ = w.Write(body)
	})
}

type bufferedResponse struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }

func TestFailedImportsLeaveNothing(t *testing.T) {
	big := strings.Repeat("0123456789", 10_000)
	tests := []struct {
		name    string
		entries []testimage.Entry
		mw      func(http.Handler) http.Handler
		want    error
	}{
		{"corrupted blob", []testimage.Entry{testimage.File("f", big)}, corruptBlobs, nil},
		{"escaping name", []testimage.Entry{testimage.File("ok", big), testimage.File("../escape", "x")}, nil, archive.ErrInvalidName},
		{"hardlink out of the layer", []testimage.Entry{testimage.File("ok", big), testimage.Hardlink("h", "/etc/passwd")}, nil, archive.ErrLinkTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []testimage.RegistryOption
			if tt.mw != nil {
				opts = append(opts, testimage.WithMiddleware(tt.mw))
			}
			reg := testimage.NewRegistry(t, opts...)
			img, _ := testimage.Image(mustLayer(t, testimage.Gzip, tt.entries...))
			ref := reg.Push(t, "bad/img:v1", img)
			s := openStore(t, overlay.ModeAuto)
			_, err := s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("want an error (%v), got %v", tt.want, err)
			}
			assertEmptyStore(t, s)
		})
	}
}

func TestImportWaitsForCancelledCaller(t *testing.T) {
	reg := testimage.NewRegistry(t)
	img, _ := testimage.Image(mustLayer(t, testimage.Gzip, testimage.File("f", "x")))
	ref := reg.Push(t, "a/b:v1", img)
	resolved, err := source.Resolve(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, overlay.ModeAuto)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Import(ctx, resolved.Layers); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: want context.Canceled, got %v", err)
	}
	// The retry joins or finds the import the first caller started.
	if err := s.Import(context.Background(), resolved.Layers); err != nil {
		t.Fatal(err)
	}
	if !s.HasLayer(resolved.Layers[0].DiffID) {
		t.Fatal("layer missing after retry")
	}
}
