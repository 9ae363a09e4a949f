package node

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/internal/testimage"
)

// throttle sends the blob at path in chunks of chunk bytes, one per pause:
// a slow registry, at chunk/pause bytes a second.
func throttle(path string, chunk int, pause time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, path) {
				next.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(&slowWriter{ResponseWriter: w, chunk: chunk, pause: pause, done: r.Context().Done()}, r)
		})
	}
}

type slowWriter struct {
	http.ResponseWriter
	chunk int
	pause time.Duration
	done  <-chan struct{}
}

func (w *slowWriter) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		k, err := w.ResponseWriter.Write(p[:min(len(p), w.chunk)])
		n += k
		if err != nil {
			return n, err
		}
		p = p[k:]
		_ = http.NewResponseController(w.ResponseWriter).Flush()
		select {
		case <-time.After(w.pause):
		case <-w.done:
			return n, context.Canceled
		}
	}
	return n, nil
}

// newSlowRegistry serves the test LayerSet's image with a second layer of
// size incompressible bytes, whose blob comes at about 1.25 MiB/s.
func newSlowRegistry(t *testing.T, size int) (*registry, []int64) {
	t.Helper()
	small, err := testimage.Layer([]testimage.Entry{
		testimage.Dir("etc"),
		testimage.File("etc/os-release", "layerset test\n"),
		testimage.File("bin/tool", "#!/bin/sh\necho tool\n"),
	}, testimage.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rng := rand.New(rand.NewChaCha8([32]byte{}))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	large, err := testimage.Layer([]testimage.Entry{testimage.File("data/blob", string(data))}, testimage.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	r := &registry{stall: make(chan struct{}), stalled: make(chan struct{}, 16)}
	if r.layer, err = large.Digest(); err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(small, large)
	if err != nil {
		t.Fatal(err)
	}
	blobPath := "/blobs/" + r.layer.String()
	r.Registry = testimage.NewRegistry(t,
		testimage.WithMiddleware(throttle(blobPath, 64<<10, 50*time.Millisecond)),
		testimage.WithMiddleware(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, blobPath) {
					r.blobGets.Add(1)
				}
				next.ServeHTTP(w, req)
			})
		}))
	r.image = r.Push(t, "tools:v1", img)
	var sizes []int64
	for _, l := range []interface{ Size() (int64, error) }{small, large} {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	return r, sizes
}

var pullingRE = regexp.MustCompile(`(\d+\.\d)/(\d+\.\d) MiB \(([01]) of 2 layers in the cache, 1 pulling\)`)

// TestPullProgressWhileWaiting: a first mount whose large layer comes
// slowly outlives its deadline; the call fails as before, with
// DeadlineExceeded, and says how far the pull got, as does an event on
// the pod (inline) or PersistentVolume; the retry joins the pull and
// succeeds, and the node's pull metrics count the blobs.
func TestPullProgressWhileWaiting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		id      string
		call    func(ctx context.Context, e *env, id, path string) error
		owner   string
		cleanup func(e *env, id, path string) error
	}{{
		name: "inline volume",
		id:   "csi-slow",
		call: func(ctx context.Context, e *env, id, path string) error {
			_, err := e.node.NodePublishVolume(ctx, e.ephemeralRequest(id, path))
			return err
		},
		owner: "Pod/shop/web-0",
		cleanup: func(e *env, id, path string) error {
			_, err := e.client.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: path})
			return err
		},
	}, {
		name: "persistent volume",
		id:   "pv-slow",
		call: func(ctx context.Context, e *env, id, path string) error {
			_, err := e.node.NodeStageVolume(ctx, e.stageRequest(id, path))
			return err
		},
		owner: "PersistentVolume/pv-slow",
		cleanup: func(e *env, id, path string) error {
			_, err := e.client.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: path})
			return err
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			reg, sizes := newSlowRegistry(t, 4<<20) // about 3 s to send
			e := newEnv(t, reg)
			metrics := prometheus.NewRegistry()
			metrics.MustRegister(NewPullCollector(e.store))
			id, path := tc.id, filepath.Join(e.dir, "mount")

			// Called directly, not through gRPC, so that the code checked
			// is the node's, not the one the client makes up.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := tc.call(ctx, e, id, path)
			cancel()
			s, _ := status.FromError(err)
			m := pullingRE.FindStringSubmatch(s.Message())
			if s.Code() != codes.DeadlineExceeded || m == nil || !strings.HasPrefix(s.Message(), "pulling the layers of LayerSet tools: ") {
				t.Fatalf("first call, the large blob still coming: %v; want DeadlineExceeded saying how far the pull got", err)
			}
			total := float64(sizes[0]+sizes[1]) / (1 << 20)
			if done := m[1]; m[2] != fmt.Sprintf("%.1f", total) || done == "0.0" || done == m[2] {
				t.Errorf("progress %s/%s MiB, want part of %.1f MiB", done, m[2], total)
			}
			events := strings.Join(e.events.all(), "\n")
			want := tc.owner + " Pulling: volume " + id + " waits for the layers of LayerSet tools: pulling "
			if !strings.Contains(events, want) || !pullingRE.MatchString(events) {
				t.Errorf("events:\n%s\nwant one starting %q with the progress", events, want)
			}

			if err := tc.call(context.Background(), e, id, path); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if n := reg.blobGets.Load(); n != 1 {
				t.Errorf("the large blob was downloaded %d times, want once: the retry must join the pull", n)
			}
			if got := strings.Count(strings.Join(e.events.all(), "\n"), " Pulling: "); got != 1 {
				t.Errorf("%d Pulling events, want one: the retry that succeeded has nothing to say", got)
			}
			// Scraped as Prometheus would.
			scrape := httptest.NewRecorder()
			promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}).ServeHTTP(scrape, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			body := scrape.Body.String()
			for _, want := range []struct {
				series string
				value  float64
			}{
				{"layerset_pull_bytes_total", float64(sizes[0] + sizes[1])},
				{`layerset_pull_layers_total{result="ok"}`, 2},
				{`layerset_pull_layers_total{result="error"}`, 0},
			} {
				if got, ok := sample(body, want.series); !ok || got != want.value {
					t.Errorf("metrics:\n%s\nwant %s %v", body, want.series, want.value)
				}
			}
			// The large blob took seconds to come, and they are counted.
			if secs, _ := sample(body, "layerset_pull_seconds_total"); secs < 2 {
				t.Errorf("metrics:\n%s\nwant layerset_pull_seconds_total of 2 s or more", body)
			}
			for _, name := range []string{"layerset_pull_bytes_total", "layerset_pull_seconds_total", "layerset_pull_layers_total"} {
				if !strings.Contains(body, "\n# TYPE "+name+" counter\n") {
					t.Errorf("metrics:\n%s\nwant %s a counter", body, name)
				}
			}
			if err := tc.cleanup(e, id, path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// sample is the value of one series in a scrape of the text format.
func sample(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}
