package source

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
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
	// context). 0 means go-containerregistry's default of 4.
	ParallelBlobs int
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

func (o Options) remoteOptions(insecure map[string]bool) []remote.Option {
	next := o.Transport
	if next == nil {
		next = remote.DefaultTransport
	}
	opts := []remote.Option{
		remote.WithAuthFromKeychain(o.keychain()),
		remote.WithTransport(&tlsOnly{next: next, insecure: insecure}),
	}
	if o.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(o.UserAgent))
	}
	if o.ParallelBlobs > 0 {
		opts = append(opts, remote.WithJobs(o.ParallelBlobs))
	}
	return opts
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
