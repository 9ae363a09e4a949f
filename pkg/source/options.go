package source

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/logs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Options configures Resolve.
type Options struct {
	Keychain authn.Keychain // nil = authn.DefaultKeychain
	// Insecure lists registry hosts ("host" or "host:port", as written in
	// references) that may be reached over plain HTTP. Every other host is
	// reached over TLS only, loopback and private addresses included.
	Insecure  []string
	Platform  *v1.Platform      // nil = this node's: runtime.GOOS/GOARCH, plus the GOARM variant on arm
	Transport http.RoundTripper // nil = remote.DefaultTransport
	UserAgent string
	// ParallelBlobs caps how many blobs of one resolved registry image may be
	// open at once; further Layer.Open calls wait for a Close (or their
	// context). 0 means 4.
	ParallelBlobs int

	// Registry blobs of at least RangeThreshold bytes are fetched as
	// RangeConnections parallel HTTP range requests of RangeChunkSize bytes
	// each, reassembled in order into the one reader Layer.Open returns
	// (see ranged.go). Smaller blobs, and blobs of registries that ignore
	// Range, are one streaming GET. The memory this takes is bounded by
	// RangeConnections × RangeChunkSize per open blob (32 MiB with the
	// defaults), so at most ParallelBlobs × RangeConnections ×
	// RangeChunkSize per image. Over TLS, Go's default transport may
	// negotiate HTTP/2, and the ranges are then streams of one TCP
	// connection: that still helps against per-request limits, but against a
	// per-connection cap pass a Transport with HTTP/2 off.
	//
	// RangeThreshold 0 means 64 MiB; negative, never fetch in ranges.
	RangeThreshold int64
	// RangeChunkSize 0 means 8 MiB; otherwise 1 MiB to 256 MiB. 8 MiB keeps
	// four layers pulled at once (the layer store's default) within 128 MiB
	// of buffers, the node plugin's memory request, while each request
	// still moves enough to make its round trip small at 100 MB/s.
	RangeChunkSize int64
	// RangeConnections 0 means 4; otherwise 1 to 16.
	RangeConnections int
	// FetchRetries is how many times one blob request (one range, or the
	// whole streamed blob) is resumed from the byte it reached after its
	// connection dropped. 0 means 5; negative, never; at most 100.
	FetchRetries int

	// retryDelay is the pause before the first resume, doubled for each
	// further one; 0 means defaultRetryDelay. Tests shorten it.
	retryDelay time.Duration
}

func (o Options) keychain() authn.Keychain {
	if o.Keychain == nil {
		return authn.DefaultKeychain
	}
	return o.Keychain
}

func (o Options) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return hostPlatform()
}

// insecureHosts validates Options.Insecure and returns it as a set of
// lower-cased authorities.
func (o Options) insecureHosts() (map[string]bool, error) {
	set := make(map[string]bool, len(o.Insecure))
	for _, h := range o.Insecure {
		if err := checkHost(h); err != nil {
			return nil, withKind(ErrInvalidReference, fmt.Errorf("Options.Insecure entry %q: %w", h, err))
		}
		set[strings.ToLower(h)] = true
	}
	return set, nil
}

func checkHost(h string) error {
	if h == "" || strings.ContainsAny(h, "/@?#") {
		return fmt.Errorf("want host or host:port, without scheme or path")
	}
	u, err := url.Parse("//" + h)
	if err != nil || u.Host != h {
		return fmt.Errorf("want host or host:port, without scheme or path")
	}
	if _, port, err := net.SplitHostPort(h); err == nil && port == "" {
		return fmt.Errorf("empty port")
	}
	return nil
}

// baseTransport is what go-containerregistry's remote package would put
// under the authentication layer for these options: the TLS guard, request
// logging when debugging, its retry of failed round trips and the user
// agent. It is built here rather than by remote so that the manifest puller
// and the blob fetches share one authenticated transport (see session.go).
func (o Options) baseTransport(insecure map[string]bool) http.RoundTripper {
	next := o.Transport
	if next == nil {
		next = remote.DefaultTransport
	}
	var t http.RoundTripper = &tlsOnly{next: next, insecure: insecure}
	if logs.Enabled(logs.Debug) {
		t = transport.NewLogger(t)
	}
	// remote's defaults: three tries, 1 s then 3 s apart.
	t = transport.NewRetry(t,
		transport.WithRetryBackoff(transport.Backoff{Duration: time.Second, Factor: 3, Jitter: 0.1, Steps: 3}),
		transport.WithRetryPredicate(temporary),
		transport.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout))
	if o.UserAgent != "" {
		t = transport.NewUserAgent(t, o.UserAgent)
	}
	return t
}

const (
	defaultParallelBlobs    = 4
	defaultRangeThreshold   = 64 << 20
	defaultRangeChunkSize   = 8 << 20
	minRangeChunkSize       = 1 << 20
	maxRangeChunkSize       = 256 << 20
	defaultRangeConnections = 4
	maxRangeConnections     = 16
	defaultFetchRetries     = 5
	maxFetchRetries         = 100
	defaultRetryDelay       = 100 * time.Millisecond
	maxRetryDelay           = 5 * time.Second
)

// fetchConfig is how registry blobs are fetched, defaults applied.
type fetchConfig struct {
	parallelBlobs int
	threshold     int64 // < 0: never ranged
	chunkSize     int64
	connections   int
	retries       int
	retryDelay    time.Duration
}

// Validate checks the options Resolve would refuse, so that a program can
// refuse its flags when it starts rather than at its first pull from a
// registry.
func (o Options) Validate() error {
	_, err := o.fetchConfig()
	return err
}

// fetchConfig applies the defaults and checks the bounds of the fetch
// options; out-of-range values are refused rather than clamped, so a typo
// in a flag does not silently become something else.
func (o Options) fetchConfig() (fetchConfig, error) {
	c := fetchConfig{
		parallelBlobs: orDefault(o.ParallelBlobs, defaultParallelBlobs),
		threshold:     orDefault(o.RangeThreshold, defaultRangeThreshold),
		chunkSize:     orDefault(o.RangeChunkSize, defaultRangeChunkSize),
		connections:   orDefault(o.RangeConnections, defaultRangeConnections),
		retries:       orDefault(o.FetchRetries, defaultFetchRetries),
		retryDelay:    orDefault(o.retryDelay, defaultRetryDelay),
	}
	if c.parallelBlobs < 0 {
		c.parallelBlobs = defaultParallelBlobs // as before: only a positive value counts
	}
	var errs []error
	if c.chunkSize < minRangeChunkSize || c.chunkSize > maxRangeChunkSize {
		errs = append(errs, fmt.Errorf("Options.RangeChunkSize %d: want 1 MiB to 256 MiB", o.RangeChunkSize))
	}
	if c.connections < 1 || c.connections > maxRangeConnections {
		errs = append(errs, fmt.Errorf("Options.RangeConnections %d: want 1 to %d", o.RangeConnections, maxRangeConnections))
	}
	if c.retries > maxFetchRetries {
		errs = append(errs, fmt.Errorf("Options.FetchRetries %d: want at most %d", o.FetchRetries, maxFetchRetries))
	}
	c.retries = max(c.retries, 0)
	return c, errors.Join(errs...)
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// hostPlatform is the platform this binary runs on. On arm the variant is
// the GOARM level the binary was built for, the best the runtime can tell
// without probing the CPU.
func hostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm" {
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					p.Variant = "v" + strings.SplitN(s.Value, ",", 2)[0]
				}
			}
		}
	}
	return p
}
