package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// session is the authenticated link to one registry repository: one ping
// and token exchange, made on first use and shared by the manifest puller
// and the blob fetches, so a bearer token is fetched (and refreshed on a 401)
// once for both.
type session struct {
	puller *remote.Puller
	client *http.Client // for blobs: the same transport, with our redirect policy
}

func newSession(ctx context.Context, repo name.Repository, o Options, insecure map[string]bool) (*session, error) {
	auth, err := authn.Resolve(ctx, o.keychain(), repo)
	if err != nil {
		return nil, err
	}
	// NewWithContext returns a *transport.Wrapper, which tells remote the
	// transport is complete: it adds no second retry, logging or login.
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, o.baseTransport(insecure),
		[]string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	p, err := remote.NewPuller(remote.WithTransport(tr))
	if err != nil {
		return nil, err
	}
	return &session{puller: p, client: &http.Client{Transport: tr, CheckRedirect: checkRedirect}}, nil
}

// errRedirectRefused marks a redirect checkRedirect turned down; retrying
// the request would only be refused again.
var errRedirectRefused = errors.New("redirect refused")

// checkRedirect follows blob redirects (registries send blob GETs to object
// storage with a 307), each request on its own since signed URLs expire,
// except one from a host to a different one named by a private, loopback or
// link-local IP literal: a registry must not be able to point the node at
// its cloud metadata service or other internal addresses. This is the rule
// go-containerregistry applies to its own blob fetches. The Range header
// goes along (net/http copies headers on a redirect); the bearer token does
// not, because the authenticating transport only adds it for the registry.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return fmt.Errorf("%w: stopped after 10 redirects", errRedirectRefused)
	}
	from, to := via[0].URL.Hostname(), req.URL.Hostname()
	if from != to && privateAddress(to) {
		return fmt.Errorf("%w: from %q to private or link-local address %q", errRedirectRefused, from, to)
	}
	return nil
}

// privateAddress reports whether host is an IP literal, in any form a
// resolver may accept ("127.1", "0x7f000001", "::ffff:10.0.0.1"), of a
// loopback, private, link-local or unspecified address.
func privateAddress(host string) bool {
	host, _, _ = strings.Cut(host, "%") // the dialer ignores zones
	a, err := netip.ParseAddr(host)
	if err != nil {
		var ok bool
		if a, ok = legacyIPv4(host); !ok {
			return false
		}
	}
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsUnspecified()
}

// legacyIPv4 parses the inet_aton forms getaddrinfo accepts: one to four
// parts, each decimal, octal (0...) or hex (0x...), the last filling the
// remaining bytes.
func legacyIPv4(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		bits := 8
		if i == len(parts)-1 {
			bits = 8 * (5 - len(parts))
		}
		n, err := strconv.ParseUint(p, 0, bits)
		if err != nil || strings.HasPrefix(p, "+") {
			return netip.Addr{}, false
		}
		if i == len(parts)-1 {
			v = v<<bits | n
		} else {
			v = v<<8 | n
		}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// temporary tells which failed round trips the transport retries: what
// remote's default retry predicate takes for a network blip.
func temporary(err error) bool {
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}
