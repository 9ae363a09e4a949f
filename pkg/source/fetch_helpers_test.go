package source

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerset/layerset-csi/internal/testimage"
)

// randomBlob returns n bytes that do not compress, from a fixed seed.
func randomBlob(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16)})
	_, _ = r.Read(b)
	return b
}

// pushBlob pushes an image whose one layer is blob, straight to reg.
func pushBlob(t testing.TB, reg *testimage.Registry, repoTag string, blob []byte) {
	t.Helper()
	reg.Push(t, repoTag, image(t, static.NewLayer(blob, types.OCIUncompressedLayer)))
}

// resolveLayer resolves host/repoTag and returns its one layer.
func resolveLayer(t testing.TB, host, repoTag string, o Options) Layer {
	t.Helper()
	img, err := Resolve(context.Background(), host+"/"+repoTag, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 1 {
		t.Fatalf("%d layers, want 1", len(img.Layers))
	}
	return img.Layers[0]
}

// rangedOpts fetches blobs of 1 MiB and more in 1 MiB ranges over 4
// connections, and resumes almost at once.
func rangedOpts(insecure ...string) Options {
	return Options{
		Keychain:         MultiKeychain(),
		Insecure:         insecure,
		RangeThreshold:   1 << 20,
		RangeChunkSize:   1 << 20,
		RangeConnections: 4,
		retryDelay:       time.Millisecond,
	}
}

// readLayer reads l to its end (or error) and closes it.
func readLayer(ctx context.Context, t testing.TB, l Layer) ([]byte, error) {
	t.Helper()
	rc, err := l.Open(ctx)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	if cerr := rc.Close(); cerr != nil {
		t.Errorf("Close: %v", cerr)
	}
	return b, err
}

// request is one blob GET as the registry saw it.
type request struct {
	rng    string // the Range header, "" for none
	remote string // the client's address: a connection
}

// blobLog records blob GETs reaching the registry and how many were being
// answered at once.
type blobLog struct {
	mu       sync.Mutex
	reqs     []request
	inFlight int
	peak     int
}

func (l *blobLog) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, request{rng: r.Header.Get("Range"), remote: r.RemoteAddr})
		l.inFlight++
		l.peak = max(l.peak, l.inFlight)
		l.mu.Unlock()
		defer func() {
			l.mu.Lock()
			l.inFlight--
			l.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

func (l *blobLog) requests() []request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

func (l *blobLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs, l.peak = nil, 0
}

func (l *blobLog) peakInFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

// proxy is a TCP proxy in front of a registry, on a real loopback socket,
// that can drop connections part-way through what it forwards and cap each
// connection's bandwidth: the faults and limits of real networks, which an
// in-process handler cannot produce.
type proxy struct {
	ln     net.Listener
	target string

	// cutAfter > 0 drops a connection once it has carried that many bytes
	// to the client, while cuts is above zero (each drop takes one); cuts <
	// 0 means every connection. Odd cuts reset (RST), even ones close (FIN).
	cutAfter int64
	cuts     atomic.Int64
	cutDone  atomic.Int64
	// rate > 0 caps each connection at rate bytes/s towards the client.
	rate int64

	mu    sync.Mutex
	ports map[string]bool // client addresses seen
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(t testing.TB, target string, cutAfter, cuts, rate int64) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, cutAfter: cutAfter, rate: rate, ports: map[string]bool{}, conns: map[net.Conn]bool{}}
	p.cuts.Store(cuts)
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) Host() string { return p.ln.Addr().String() }

func (p *proxy) clients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ports)
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) track(c net.Conn, add bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		if p.conns == nil {
			return false // closing
		}
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.ports[c.RemoteAddr().String()] = true
		p.mu.Unlock()
		p.wg.Add(1)
		go p.handle(c)
	}
}

func (p *proxy) handle(client net.Conn) {
	defer p.wg.Done()
	defer func() { _ = client.Close() }()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer func() { _ = server.Close() }()
	if !p.track(client, true) || !p.track(server, true) {
		return
	}
	defer p.track(client, false)
	defer p.track(server, false)

	go func() {
		_, _ = io.Copy(server, client)
		_ = server.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 32<<10)
	var sent int64
	var due time.Time // when what was sent so far may have gone at rate
	for {
		want := len(buf)
		if p.cutAfter > 0 && sent < p.cutAfter {
			want = int(min(int64(want), p.cutAfter-sent))
		}
		n, err := server.Read(buf[:want])
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
			sent += int64(n)
			if p.rate > 0 {
				// Idle time earns at most 10 ms of credit, so a connection
				// that waited does not then burst; that much absorbs the
				// sleeps' overshoot, so the average is rate.
				due = later(due, time.Now().Add(-10*time.Millisecond)).Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
				if d := time.Until(due); d > time.Millisecond {
					time.Sleep(d)
				}
			}
		}
		if err != nil {
			return
		}
		if p.cutAfter > 0 && sent == p.cutAfter && p.takeCut() {
			if p.cutDone.Add(1)%2 == 1 {
				_ = client.(*net.TCPConn).SetLinger(0) // close sends RST
			}
			return
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (p *proxy) takeCut() bool {
	for {
		n := p.cuts.Load()
		if n < 0 {
			return true
		}
		if n == 0 {
			return false
		}
		if p.cuts.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// checkNoFetchGoroutines fails if a goroutine of the blob fetcher outlives
// the reader: Close must wait for all of them. One that is still blocked
// (on the network, a timer, a lock) is a leak at once; one that is runnable
// may be just past its last statement, and gets a moment to exit, as
// goleak gives.
func checkNoFetchGoroutines(t testing.TB) {
	t.Helper()
	left, blocked := fetchGoroutines()
	for _, g := range blocked {
		t.Errorf("fetch goroutine still blocked after Close:\n%s", g)
	}
	for deadline := time.Now().Add(time.Second); len(left) > 0 && time.Now().Before(deadline); left, _ = fetchGoroutines() {
		time.Sleep(10 * time.Millisecond)
	}
	for _, g := range left {
		t.Errorf("fetch goroutine left running:\n%s", g)
	}
}

func fetchGoroutines() (all, blocked []string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !strings.Contains(g, "source.(*rangedReader)") && !strings.Contains(g, "source.(*blobFetch)") {
			continue
		}
		all = append(all, g)
		if !strings.Contains(g, " [runnable]:") && !strings.Contains(g, " [running]:") {
			blocked = append(blocked, g)
		}
	}
	return all, blocked
}

// rangeWrap serves blob GETs with a Range header through fn, which gets
// the range and the blob; fn returning false passes the request on.
func rangeWrap(blob []byte, fn func(w http.ResponseWriter, first, last int64) bool) func(http.Handler) http.Handler {
	d := sha256Hash(blob)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				if rng := r.Header.Get("Range"); rng != "" {
					var first, last int64
					if err := parseRangeHeader(rng, &first, &last); err == nil && fn(w, first, last) {
						return
					}
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

func parseRangeHeader(h string, first, last *int64) error {
	cr, err := parseContentRange("bytes " + strings.TrimPrefix(h, "bytes=") + "/*")
	if err != nil {
		return err
	}
	*first, *last = cr.first, cr.last
	return nil
}

// ignoreRange drops the Range header of every request, as a registry (or a
// proxy in front of it) without range support does: it answers 200.
func ignoreRange(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Range")
		next.ServeHTTP(w, r)
	})
}

// throttle caps each blob response at rate bytes/s, so that the time a
// request is in flight at the handler is the time its transfer takes.
func throttle(rate int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/blobs/") {
				w = &slowWriter{ResponseWriter: w, rate: rate, start: time.Now()}
			}
			next.ServeHTTP(w, r)
		})
	}
}

type slowWriter struct {
	http.ResponseWriter
	rate  int64
	start time.Time
	sent  int64
}

func (s *slowWriter) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		n, err := s.ResponseWriter.Write(b[:min(len(b), 32<<10)])
		total += n
		s.sent += int64(n)
		if err != nil {
			return total, err
		}
		b = b[n:]
		if ahead := time.Duration(float64(s.sent)/float64(s.rate)*float64(time.Second)) - time.Since(s.start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
	return total, nil
}
