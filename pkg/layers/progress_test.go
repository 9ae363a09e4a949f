package layers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// randomBytes is n bytes no compressor shrinks, the same at every run, so
// a layer's blob is about as large as its content.
func randomBytes(n int) string {
	r := rand.New(rand.NewChaCha8([32]byte{}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// stallBlob serves the first bytes of one blob, then holds the rest back
// until released: a registry that slows to nothing mid-blob, which a real
// one cannot be made to do on demand.
type stallBlob struct {
	digest  string
	first   int
	reached chan struct{} // closed once first bytes were sent
	release chan struct{}
	once    sync.Once
	free    sync.Once
}

func newStallBlob(digest string, first int) *stallBlob {
	return &stallBlob{digest: digest, first: first, reached: make(chan struct{}), release: make(chan struct{})}
}

func (s *stallBlob) Release() { s.free.Do(func() { close(s.release) }) }

func (s *stallBlob) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+s.digest) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&testimage.PauseWriter{ResponseWriter: w, Left: s.first, Pause: func() error {
			_ = http.NewResponseController(w).Flush()
			s.once.Do(func() { close(s.reached) })
			select {
			case <-s.release:
				return nil
			case <-r.Context().Done():
				return r.Context().Err()
			}
		}}, r)
	})
}

// logLines collects what a logger writes, for a test to read.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func (l *logLines) context(ctx context.Context) context.Context {
	return klog.NewContext(ctx, textlogger.NewLogger(textlogger.NewConfig(textlogger.Output(l))))
}

// matching returns the lines holding every one of subs.
func (l *logLines) matching(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// TestImportProgress pulls a chain of a small layer and a 4 MiB one whose
// blob stalls halfway: while it stalls, the store reports the large
// layer's bytes, the chain's sum, and logs them; after, the chain is
// complete and the totals count every byte.
func TestImportProgress(t *testing.T) {
	small := mustLayer(t, testimage.Gzip, testimage.File("small", "small layer"))
	large := mustLayer(t, testimage.Gzip, testimage.File("large", randomBytes(4<<20)))
	largeDigest, _ := large.Digest()
	stall := newStallBlob(largeDigest.String(), 1<<20)
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(stall.Middleware))
	t.Cleanup(stall.Release)
	img, _ := testimage.Image(small, large)
	ref := reg.Push(t, "progress/img:v1", img)
	resolved, err := source.Resolve(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	smallSize, largeSize := resolved.Layers[0].Size, resolved.Layers[1].Size

	// An interval the small layer's import ends well within, even on a
	// loaded machine: it must log nothing.
	s, err := Open(context.Background(), Options{Root: t.TempDir(), MountMode: overlay.ModeAuto, NoSync: true, ProgressInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if cp := s.ChainProgress(resolved.Layers); cp != (ChainProgress{Layers: 2, Total: smallSize + largeSize}) {
		t.Errorf("before the pull: %+v", cp)
	}
	var logs logLines
	ctx, watch := WatchImports(logs.context(context.Background()))
	imported := make(chan error, 1)
	go func() { imported <- s.Import(ctx, resolved.Layers) }()

	<-stall.reached
	var cp ChainProgress
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp = s.ChainProgress(resolved.Layers)
		if cp.Present == 1 && cp.Pulling == 1 && cp.Done > smallSize || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if cp.Layers != 2 || cp.Present != 1 || cp.Pulling != 1 || cp.Total != smallSize+largeSize ||
		cp.Done <= smallSize || cp.Done > smallSize+largeSize/2 {
		t.Errorf("while the large blob stalls after 1 MiB of %d bytes: %+v; want the small layer whole and part of the large one", largeSize, cp)
	}
	if got, want := cp.String(), fmt.Sprintf("/%.1f MiB (1 of 2 layers in the cache, 1 pulling)", float64(smallSize+largeSize)/(1<<20)); !strings.HasSuffix(got, want) {
		t.Errorf("progress reads %q, want it to end %q", got, want)
	}
	if p := s.Progress(); len(p) != 1 || p[0].DiffID != resolved.Layers[1].DiffID || p[0].Digest != largeDigest ||
		p[0].Total != largeSize || p[0].Done <= 0 || p[0].Done > largeSize/2 || p[0].Started.IsZero() {
		t.Errorf("layers in flight: %+v, want the large one, part read", p)
	}
	if got := watch.Layers(); len(got) != 2 || got[0].DiffID != resolved.Layers[0].DiffID {
		t.Errorf("the watch saw %d layers, want the chain's 2", len(got))
	}
	total := fmt.Sprintf(` total=%d `, largeSize)
	for time.Now().Before(deadline) && len(logs.matching(`"Pulling layer"`, total)) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	if len(logs.matching(`"Pulling layer"`, total, largeDigest.String(), ` rate="`)) == 0 {
		t.Errorf("no progress line for the stalled layer; logged:\n%s", strings.Join(logs.matching(""), "\n"))
	}

	stall.Release()
	if err := <-imported; err != nil {
		t.Fatal(err)
	}
	if cp := s.ChainProgress(resolved.Layers); !cp.Complete() || cp.Done != cp.Total || cp.Pulling != 0 {
		t.Errorf("after the pull: %+v", cp)
	}
	if p := s.Progress(); len(p) != 0 {
		t.Errorf("layers in flight after the pull: %+v", p)
	}
	if len(logs.matching(`"Pulled layer"`, total)) != 1 {
		t.Errorf("want one closing line for the large layer; logged:\n%s", strings.Join(logs.matching(""), "\n"))
	}
	// Only the layer that outlived an interval logs: not the small one.
	if got := logs.matching(resolved.Layers[0].Digest.String()); len(got) != 0 {
		t.Errorf("the small layer logged progress: %q", got)
	}
	st := s.PullStats()
	if st.Bytes != smallSize+largeSize || st.Imported != 2 || st.Failed != 0 || st.Duration <= 0 {
		t.Errorf("totals %+v, want %d bytes, 2 imported", st, smallSize+largeSize)
	}
}

// TestImportProgressOfFailure: a failed import counts as failed, its
// bytes as read, and its layer as not there.
func TestImportProgressOfFailure(t *testing.T) {
	layer := mustLayer(t, testimage.Gzip, testimage.File("f", randomBytes(64<<10)))
	d, _ := layer.Digest()
	img, _ := testimage.Image(layer)
	s := openStore(t, overlay.ModeAuto)
	if err := pullErr(t, s, img, corruptLayerBlobs(d.String())); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("want ErrDigestMismatch, got %v", err)
	}
	size, _ := layer.Size()
	if st := s.PullStats(); st.Failed != 1 || st.Imported != 0 || st.Bytes != size {
		t.Errorf("totals %+v, want one failure after %d bytes", st, size)
	}
	if p := s.Progress(); len(p) != 0 {
		t.Errorf("layers in flight after the failure: %+v", p)
	}
}

func TestBytesOf(t *testing.T) {
	for _, tc := range []struct {
		done, total int64
		want        string
	}{
		{0, 0, "0/0 B"},
		{512, 1000, "512/1000 B"},
		{1 << 10, 3 << 10, "1.0/3.0 KiB"},
		{1288490188, 2 << 30, "1.2/2.0 GiB"},
		{5 << 20, 1 << 40, "0.0/1.0 TiB"},
	} {
		if got := BytesOf(tc.done, tc.total); got != tc.want {
			t.Errorf("BytesOf(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
	if got := (ChainProgress{Layers: 8, Present: 3, Pulling: 2, Done: 1288490188, Total: 2 << 30}).String(); got != "1.2/2.0 GiB (3 of 8 layers in the cache, 2 pulling)" {
		t.Errorf("chain progress reads %q", got)
	}
	if got := bytesRate(12.5 * (1 << 20)); got != "12.5 MiB/s" {
		t.Errorf("rate reads %q", got)
	}
}
