package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerset/layerset-csi/internal/testimage"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/ktesting"
)

// chunkRanges is the Range headers of a blob of size bytes in chunks.
func chunkRanges(size, chunk int64) []string {
	var r []string
	for first := int64(0); first < size; first += chunk {
		r = append(r, fmt.Sprintf("bytes=%d-%d", first, min(first+chunk, size)-1))
	}
	return r
}

func ranges(reqs []request) []string {
	var r []string
	for _, q := range reqs {
		r = append(r, q.rng)
	}
	slices.Sort(r)
	return r
}

// logContext returns a context whose klog logger keeps what is logged.
func logContext(t *testing.T) (context.Context, func() string) {
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.BufferLogs(true)))
	return klog.NewContext(context.Background(), logger), func() string {
		return logger.GetSink().(ktesting.Underlier).GetBuffer().String()
	}
}

func TestRangedFetch(t *testing.T) {
	var log blobLog
	// 16 MiB/s per response: a 1 MiB range takes 60 ms or more, so the
	// requests of one window overlap for certain.
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(throttle(16<<20)), testimage.WithMiddleware(log.middleware))
	blob := randomBlob(8<<20+12345, 1) // not a whole number of chunks
	pushBlob(t, reg, "big:v1", blob)
	px := newProxy(t, reg.Host, 0, 0, 0)
	l := resolveLayer(t, px.Host(), "big:v1", rangedOpts(px.Host()))
	log.reset()

	got, err := readLayer(context.Background(), t, l)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes that differ from the %d pushed", len(got), len(blob))
	}
	want := chunkRanges(int64(len(blob)), 1<<20)
	slices.Sort(want)
	if got := ranges(log.requests()); !slices.Equal(got, want) {
		t.Errorf("blob requests %q, want each chunk once: %q", got, want)
	}
	if peak := log.peakInFlight(); peak < 2 || peak > 4 {
		t.Errorf("%d blob requests in flight at most, want 2 to 4 (RangeConnections)", peak)
	}
	conns := map[string]bool{}
	for _, r := range log.requests() {
		conns[r.remote] = true
	}
	if len(conns) < 2 {
		t.Errorf("blob came over %d connection(s), want several", len(conns))
	}
	t.Logf("%d ranges over %d connections, %d in flight at most; %d client connections at the proxy",
		len(want), len(conns), log.peakInFlight(), px.clients())
}

// A consumer that does not read holds the fetch at RangeConnections chunks:
// that is the memory bound.
func TestRangedFetchWaitsForTheReader(t *testing.T) {
	var log blobLog
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(log.middleware))
	blob := randomBlob(10<<20, 2)
	pushBlob(t, reg, "big:v1", blob)
	l := resolveLayer(t, reg.Host, "big:v1", rangedOpts(reg.Host))
	log.reset()

	rc, err := l.Open(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	waitFor(t, func() bool { return len(log.requests()) >= 4 })
	time.Sleep(200 * time.Millisecond) // time enough to fetch all ten on loopback
	if n := len(log.requests()); n != 4 {
		t.Fatalf("%d ranges requested with nothing read, want 4 (RangeConnections)", n)
	}
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(rc, first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(log.requests()) == 5 })
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(append(first, rest...), blob) {
		t.Fatal("blob differs from the one pushed")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

func TestRangedFetchResumes(t *testing.T) {
	var log blobLog
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(log.middleware))
	blob := randomBlob(6<<20+777, 3)
	pushBlob(t, reg, "big:v1", blob)
	px := newProxy(t, reg.Host, 300<<10, 0, 0) // each connection dropped 300 KiB in...
	l := resolveLayer(t, px.Host(), "big:v1", rangedOpts(px.Host()))
	log.reset()
	px.cuts.Store(3) // ...three times

	ctx, logs := logContext(t)
	got, err := readLayer(ctx, t, l)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes that differ from the %d pushed", len(got), len(blob))
	}
	if n := px.cutDone.Load(); n != 3 {
		t.Fatalf("%d connections dropped, want 3", n)
	}
	// Each drop is followed by a request for the rest of its chunk only.
	var resumed []string
	for _, r := range log.requests() {
		var first, last int64
		if err := parseRangeHeader(r.rng, &first, &last); err != nil {
			t.Fatalf("blob request without a valid range: %q", r.rng)
		}
		if first%(1<<20) != 0 {
			if chunkEnd := min((first/(1<<20)+1)*(1<<20), int64(len(blob))) - 1; last != chunkEnd {
				t.Errorf("resumed range %q does not end where its chunk does (%d)", r.rng, chunkEnd)
			}
			resumed = append(resumed, r.rng)
		}
	}
	if len(resumed) != 3 {
		t.Errorf("resumed ranges %q, want 3", resumed)
	}
	if out := logs(); strings.Count(out, "Resuming blob fetch") != 3 || !strings.Contains(out, l.Digest.String()) {
		t.Errorf("log does not tell the three resumes with the digest:\n%s", out)
	}
}

func TestStreamResumes(t *testing.T) {
	var log blobLog
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(log.middleware))
	blob := randomBlob(3<<20+5, 4)
	pushBlob(t, reg, "small:v1", blob)
	px := newProxy(t, reg.Host, 1<<20, 0, 0)
	o := rangedOpts(px.Host())
	o.RangeThreshold = 0 // the default, 64 MiB: streamed
	l := resolveLayer(t, px.Host(), "small:v1", o)
	log.reset()
	px.cuts.Store(2) // one reset, one close

	got, err := readLayer(context.Background(), t, l)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatalf("read %d bytes that differ from the %d pushed", len(got), len(blob))
	}
	reqs := log.requests()
	if len(reqs) != 3 || reqs[0].rng != "" {
		t.Fatalf("blob requests %+v, want one GET and two ranged resumes", reqs)
	}
	for _, r := range reqs[1:] {
		var first, last int64
		if err := parseRangeHeader(r.rng, &first, &last); err != nil || first == 0 || last != int64(len(blob))-1 {
			t.Errorf("resume asked for %q, want the rest of the blob", r.rng)
		}
	}
}

func TestStreamCannotResumeWithoutRanges(t *testing.T) {
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(ignoreRange))
	blob := randomBlob(3<<20, 5)
	pushBlob(t, reg, "small:v1", blob)
	px := newProxy(t, reg.Host, 1<<20, 0, 0)
	l := resolveLayer(t, px.Host(), "small:v1", Options{Keychain: MultiKeychain(), Insecure: []string{px.Host()}, retryDelay: time.Millisecond})
	px.cuts.Store(1)

	got, err := readLayer(context.Background(), t, l)
	if err == nil || !strings.Contains(err.Error(), "cannot resume") || !strings.Contains(err.Error(), "200 OK") ||
		!strings.Contains(err.Error(), l.Digest.String()) {
		t.Fatalf("error %v, want one naming the blob saying the registry cannot resume", err)
	}
	if len(got) >= len(blob) || !bytes.Equal(got, blob[:len(got)]) {
		t.Errorf("delivered %d bytes, want a true prefix of the blob", len(got))
	}
}

// A registry without range support answers the first range request with
// the whole blob; that answer is used as the stream.
func TestRangedFallsBackWithoutRangeSupport(t *testing.T) {
	var log blobLog
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(ignoreRange), testimage.WithMiddleware(log.middleware))
	blob := randomBlob(5<<20, 6)
	pushBlob(t, reg, "big:v1", blob)
	l := resolveLayer(t, reg.Host, "big:v1", rangedOpts(reg.Host))
	log.reset()

	ctx, logs := logContext(t)
	got, err := readLayer(ctx, t, l)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Fatal("blob differs from the one pushed")
	}
	if reqs := log.requests(); len(reqs) != 1 || reqs[0].rng != "bytes=0-1048575" {
		t.Errorf("blob requests %+v, want the one for the first chunk", reqs)
	}
	if !strings.Contains(logs(), "Registry ignores Range") {
		t.Errorf("fallback not logged:\n%s", logs())
	}
}

func TestFetchDetectsTamperedBlob(t *testing.T) {
	blob := randomBlob(4<<20+3, 7)
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(corruptBlob(sha256Hash(blob))))
	pushBlob(t, reg, "bad:v1", blob)
	for name, threshold := range map[string]int64{"ranged": 1 << 20, "streamed": -1} {
		t.Run(name, func(t *testing.T) {
			o := rangedOpts(reg.Host)
			o.RangeThreshold = threshold
			l := resolveLayer(t, reg.Host, "bad:v1", o)
			got, err := readLayer(context.Background(), t, l)
			if err == nil || !strings.Contains(err.Error(), "blob "+l.Digest.String()+" has digest sha256:") {
				t.Fatalf("error %v, want the digest mismatch", err)
			}
			if len(got) != len(blob) {
				t.Errorf("failed after %d bytes, want at the end (%d)", len(got), len(blob))
			}
		})
	}
}

// Answers that are not the range asked for fail the read, are not
// retried, and none of their bytes is passed on.
func TestRangedRefusesBadAnswers(t *testing.T) {
	blob := randomBlob(4<<20, 8)
	size := int64(len(blob))
	const at = 2 << 20 // the third chunk's answer is the bad one
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, first, last int64)
		err   string
	}{
		{"longer body", func(w http.ResponseWriter, first, last int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
			w.WriteHeader(http.StatusPartialContent) // no Content-Length: chunked
			_, _ = w.Write(blob[first : last+1])
			w.(http.Flusher).Flush()
			_, _ = w.Write([]byte("and more"))
		}, "sent more than the bytes asked for"},
		{"longer Content-Length", func(w http.ResponseWriter, first, last int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size))
			w.Header().Set("Content-Length", strconv.FormatInt(last-first+2, 10))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(blob[first : last+2])
		}, "Content-Length 1048577 for a range of 1048576 bytes"},
		{"other range", func(w http.ResponseWriter, first, last int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first+1, last+1, size))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(blob[first+1 : last+2])
		}, "the registry sent bytes 2097153-3145728"},
		{"bad Content-Range", func(w http.ResponseWriter, first, last int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d", first, last))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(blob[first : last+1])
		}, `bad Content-Range "bytes 2097152-3145727"`},
		{"other size", func(w http.ResponseWriter, first, last int64) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", first, last, size+1))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(blob[first : last+1])
		}, "the registry says it is 4194305 bytes; the descriptor declares 4194304"},
		{"whole blob", func(w http.ResponseWriter, _, _ int64) {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(blob)
		}, "answered with 200 OK after it had answered ranges"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log blobLog
			reg := testimage.NewRegistry(t, testimage.WithMiddleware(rangeWrap(blob, func(w http.ResponseWriter, first, last int64) bool {
				if first != at {
					return false
				}
				tc.serve(w, first, last)
				return true
			})), testimage.WithMiddleware(log.middleware))
			pushBlob(t, reg, "big:v1", blob)
			l := resolveLayer(t, reg.Host, "big:v1", rangedOpts(reg.Host))
			log.reset()

			got, err := readLayer(context.Background(), t, l)
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), l.Digest.String()) {
				t.Fatalf("error %v, want one naming the blob and containing %q", err, tc.err)
			}
			if len(got) > at || !bytes.Equal(got, blob[:len(got)]) {
				t.Errorf("delivered %d bytes, want at most the %d before the bad answer, all the blob's", len(got), at)
			}
			n := 0
			for _, r := range log.requests() {
				if strings.HasPrefix(r.rng, fmt.Sprintf("bytes=%d-", at)) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("bad answer asked for %d times, want once", n)
			}
			checkNoFetchGoroutines(t)
		})
	}
}

func TestRangedHonoursContext(t *testing.T) {
	reg := testimage.NewRegistry(t)
	blob := randomBlob(8<<20, 9)
	pushBlob(t, reg, "big:v1", blob)
	px := newProxy(t, reg.Host, 0, 0, 2<<20) // 2 MiB/s a connection: seconds for the blob
	l := resolveLayer(t, px.Host(), "big:v1", rangedOpts(px.Host()))

	for _, how := range []string{"cancel", "close"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rc, err := l.Open(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(rc, make([]byte, 100<<10)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if how == "cancel" {
				cancel()
				_, err = io.Copy(io.Discard, rc)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("read after cancel: %v, want context.Canceled", err)
				}
			}
			if err := rc.Close(); err != nil {
				t.Error(err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v to stop", d)
			} else {
				t.Logf("stopped in %v", d)
			}
			checkNoFetchGoroutines(t)
			if _, err := rc.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("read after Close: %v", err)
			}
		})
	}
}

func TestFetchErrorsAreClassified(t *testing.T) {
	blob := randomBlob(4<<20, 10)
	registryError := func(status int, code string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"as the test says"}]}`, code)
		}
	}
	for _, tc := range []struct {
		name   string
		at     int64 // the first byte of the range that fails; -1 for every request
		answer func(http.ResponseWriter)
		kind   error
		code   string
		onOpen bool
	}{
		{"blob unknown", -1, registryError(http.StatusNotFound, "BLOB_UNKNOWN"), ErrNotFound, "BLOB_UNKNOWN", true},
		{"denied mid-blob", 2 << 20, registryError(http.StatusForbidden, "DENIED"), ErrUnauthorized, "DENIED", false},
		{"not found mid-blob", 3 << 20, registryError(http.StatusNotFound, "BLOB_UNKNOWN"), ErrNotFound, "BLOB_UNKNOWN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := sha256Hash(blob)
			reg := testimage.NewRegistry(t, testimage.WithMiddleware(func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					var first, last int64
					if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) &&
						(tc.at < 0 || parseRangeHeader(r.Header.Get("Range"), &first, &last) == nil && first == tc.at) {
						tc.answer(w)
						return
					}
					next.ServeHTTP(w, r)
				})
			}))
			pushBlob(t, reg, "big:v1", blob)
			l := resolveLayer(t, reg.Host, "big:v1", rangedOpts(reg.Host))
			rc, err := l.Open(context.Background())
			if err == nil {
				if tc.onOpen {
					t.Error("Open succeeded")
				}
				_, err = io.Copy(io.Discard, rc)
				_ = rc.Close()
			} else if !tc.onOpen {
				t.Errorf("Open failed: %v", err)
			}
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.code) || !strings.Contains(err.Error(), d.String()) {
				t.Fatalf("error %v, want %v naming the blob and %s", err, tc.kind, tc.code)
			}
			checkNoFetchGoroutines(t)
		})
	}
}

// blobStorage is an object store blobs are redirected to, as registries do
// with S3 or GCS: it serves ranges (http.ServeContent) and records what it
// was sent.
type blobStorage struct {
	*httptest.Server
	mu     sync.Mutex
	ranges []string
	auth   []string
}

func newBlobStorage(t *testing.T, blob []byte) *blobStorage {
	s := &blobStorage{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		if a := r.Header.Get("Authorization"); a != "" {
			s.auth = append(s.auth, a)
		}
		s.mu.Unlock()
		if r.URL.Query().Get("X-Amz-Signature") != "s3cr3t" {
			http.Error(w, "signature", http.StatusForbidden)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(s.Close)
	return s
}

// redirectBlob sends authenticated GETs of blob to location with a 307.
func redirectBlob(blob []byte, location string) func(http.Handler) http.Handler {
	d := sha256Hash(blob)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, _, ok := r.BasicAuth(); ok && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				http.Redirect(w, r, location, http.StatusTemporaryRedirect)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestFetchFollowsRedirects(t *testing.T) {
	for name, size := range map[string]int{"ranged": 5<<20 + 1, "streamed": 300 << 10} {
		t.Run(name, func(t *testing.T) {
			blob := randomBlob(size, 11)
			storage := newBlobStorage(t, blob)
			reg := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "pw"),
				testimage.WithMiddleware(redirectBlob(blob, storage.URL+"/blob?X-Amz-Signature=s3cr3t")))
			pushBlob(t, reg, "big:v1", blob)
			kc, err := KeychainFromDockerConfigJSON(reg.DockerConfigJSON())
			if err != nil {
				t.Fatal(err)
			}
			o := rangedOpts(reg.Host, strings.TrimPrefix(storage.URL, "http://"))
			o.Keychain = kc
			l := resolveLayer(t, reg.Host, "big:v1", o)
			got, err := readLayer(context.Background(), t, l)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, blob) {
				t.Fatal("blob differs from the one pushed")
			}
			storage.mu.Lock()
			defer storage.mu.Unlock()
			want := []string{""}
			if name == "ranged" {
				want = chunkRanges(int64(size), 1<<20)
			}
			if got := slices.Sorted(slices.Values(storage.ranges)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
				t.Errorf("storage was asked for %q, want %q", got, want)
			}
			if len(storage.auth) != 0 {
				t.Errorf("registry credentials sent to the storage: %q", storage.auth)
			}
		})
	}
}

func TestFetchRedirectErrorsHideSignatures(t *testing.T) {
	blob := randomBlob(2<<20, 12)
	storage := newBlobStorage(t, blob)
	storage.Close() // nothing listens there any more
	reg := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "pw"),
		testimage.WithMiddleware(redirectBlob(blob, storage.URL+"/blob?X-Amz-Signature=s3cr3t")))
	pushBlob(t, reg, "big:v1", blob)
	kc, err := KeychainFromDockerConfigJSON(reg.DockerConfigJSON())
	if err != nil {
		t.Fatal(err)
	}
	o := rangedOpts(reg.Host, strings.TrimPrefix(storage.URL, "http://"))
	o.Keychain, o.FetchRetries = kc, 1
	l := resolveLayer(t, reg.Host, "big:v1", o)
	_, err = readLayer(context.Background(), t, l)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") || !strings.Contains(err.Error(), "REDACTED") {
		t.Fatalf("error %v, want one with the signature redacted", err)
	}
}

// A registry must not send the node to internal addresses: a redirect from
// one host to another named by a private IP literal is refused, and not
// retried.
func TestFetchRefusesRedirectToPrivateAddress(t *testing.T) {
	blob := randomBlob(2<<20, 13)
	storage := newBlobStorage(t, blob)
	reg := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "pw"),
		testimage.WithMiddleware(redirectBlob(blob, storage.URL+"/blob?X-Amz-Signature=s3cr3t")))
	host := "localhost:" + reg.Host[strings.LastIndexByte(reg.Host, ':')+1:] // so the storage is another host
	pushBlob(t, reg, "big:v1", blob)
	kc, err := KeychainFromDockerConfigJSON(bytes.ReplaceAll(reg.DockerConfigJSON(), []byte(reg.Host), []byte(host)))
	if err != nil {
		t.Fatal(err)
	}
	o := rangedOpts(host, strings.TrimPrefix(storage.URL, "http://"))
	o.Keychain = kc
	l := resolveLayer(t, host, "big:v1", o)
	_, err = readLayer(context.Background(), t, l)
	if err == nil || !strings.Contains(err.Error(), "redirect refused") || !strings.Contains(err.Error(), "127.0.0.1") {
		t.Fatalf("error %v, want the redirect refused", err)
	}
	storage.mu.Lock()
	defer storage.mu.Unlock()
	if len(storage.ranges) != 0 {
		t.Errorf("storage was asked %d times", len(storage.ranges))
	}
}

func TestFetchGivesUp(t *testing.T) {
	for name, threshold := range map[string]int64{"ranged": 1 << 20, "streamed": -1} {
		for _, retries := range []int{2, -1} {
			t.Run(fmt.Sprintf("%s, retries %d", name, retries), func(t *testing.T) {
				var log blobLog
				reg := testimage.NewRegistry(t, testimage.WithMiddleware(log.middleware))
				blob := randomBlob(3<<20, 14)
				pushBlob(t, reg, "big:v1", blob)
				px := newProxy(t, reg.Host, 300<<10, 0, 0)
				o := rangedOpts(px.Host())
				o.RangeThreshold, o.RangeConnections, o.FetchRetries = threshold, 1, retries
				l := resolveLayer(t, px.Host(), "big:v1", o)
				log.reset()
				px.cuts.Store(-1) // every connection, from now on

				_, err := readLayer(context.Background(), t, l)
				want := "giving up after 2 resumes: connection dropped at byte"
				if retries < 0 {
					want = "connection dropped at byte"
				}
				if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), l.Digest.String()) ||
					retries < 0 && strings.Contains(err.Error(), "giving up") {
					t.Fatalf("error %v, want %q naming the blob", err, want)
				}
				if n, want := len(log.requests()), 1+max(retries, 0); n != want {
					t.Errorf("%d blob requests, want %d", n, want)
				}
				checkNoFetchGoroutines(t)
			})
		}
	}
}

func TestFetchOptionsAreValidated(t *testing.T) {
	for _, tc := range []struct {
		o   Options
		err string
	}{
		{Options{RangeChunkSize: 1000}, "Options.RangeChunkSize 1000: want 1 MiB to 256 MiB"},
		{Options{RangeChunkSize: 1 << 30}, "Options.RangeChunkSize"},
		{Options{RangeConnections: -1}, "Options.RangeConnections -1: want 1 to 16"},
		{Options{RangeConnections: 17}, "Options.RangeConnections 17"},
		{Options{FetchRetries: 101}, "Options.FetchRetries 101: want at most 100"},
	} {
		_, err := Resolve(context.Background(), "r.example/app:v1", tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.err)
		}
	}
	c, err := Options{}.fetchConfig()
	if err != nil || c != (fetchConfig{parallelBlobs: 4, threshold: 64 << 20, chunkSize: 8 << 20, connections: 4, retries: 5, retryDelay: 100 * time.Millisecond}) {
		t.Errorf("defaults %+v, %v", c, err)
	}
}

func TestPrivateAddress(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1": true, "2130706433": true, "0x7f000001": true, "0177.0.0.1": true,
		"169.254.169.254": true, "2852039166": true, "10.1.2.3": true, "192.168.0.1": true, "172.16.0.1": true,
		"::1": true, "fe80::1%eth0": true, "::ffff:169.254.169.254": true, "0.0.0.0": true,
		"8.8.8.8": false, "example.com": false, "s3.amazonaws.com": false, "1.2.3.4.5": false, "": false,
		"127.0.0.256": false, "2001:db8::1": false,
	} {
		if got := privateAddress(host); got != want {
			t.Errorf("privateAddress(%q) = %v, want %v", host, got, want)
		}
	}
}
