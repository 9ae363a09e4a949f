package source

import (
	"fmt"
	"net/http"
	"strings"
)

// tlsOnly sends plain-HTTP requests over TLS unless their host is listed as
// insecure.
//
// go-containerregistry's name package considers localhost, *.localhost,
// 127.0.0.1, ::1 and RFC 1918 addresses fit for plain HTTP even without
// name.Insecure: for them Registry.Scheme() returns "http", and the ping
// that opens every session tries https first and falls back to http if
// that fails; whichever answered is then used for every later request to
// the registry. Anyone on the pod network who can make the TLS attempt fail
// thus gets the pull over plain HTTP. Every http:// request for an unlisted
// host, ping fallback, token realm and redirect included, is therefore sent
// as https:// here, at the bottom of the transport stack. Upgrading rather
// than refusing keeps TLS registries on private addresses working; a
// plain-HTTP server at such an address sees a TLS handshake it cannot
// answer and the pull fails.
type tlsOnly struct {
	next     http.RoundTripper
	insecure map[string]bool // lower-cased "host[:port]"
}

func (t *tlsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || t.insecure[strings.ToLower(req.URL.Host)] {
		return t.next.RoundTrip(req)
	}
	up := req.Clone(req.Context())
	up.URL.Scheme = "https"
	resp, err := t.next.RoundTrip(up)
	if err != nil {
		// Callers print the http:// URL they asked for; say what happened.
		return nil, fmt.Errorf("sent over TLS because %s is not listed in Options.Insecure: %w", req.URL.Host, err)
	}
	return resp, nil
}
