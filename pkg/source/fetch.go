package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"k8s.io/klog/v2"
)

// blobFetch reads one registry blob over HTTP: as one streaming GET (this
// file) or as parallel range requests (ranged.go), resuming either from the
// byte it reached when a connection drops. Nothing here checks the digest;
// the verifier around the reader does.
type blobFetch struct {
	client *http.Client
	url    string
	desc   v1.Descriptor
	cfg    fetchConfig
}

// open sends the first request and returns the reader. For a blob at or
// above the threshold that request asks for the first chunk: a 206 starts
// the ranged fetch, a 200 (a registry or proxy that ignores Range) is the
// whole blob and is streamed, with no request wasted on finding out.
func (f *blobFetch) open(ctx context.Context) (_ io.ReadCloser, err error) {
	// Every request of the blob, the first included, is made with ctx so
	// that Close stops them all, whichever reader ends up with them.
	ctx, cancel := context.WithCancelCause(ctx)
	defer func() {
		if err != nil {
			cancel(err)
		}
	}()
	ranged := f.cfg.threshold >= 0 && f.desc.Size >= f.cfg.threshold && f.desc.Size > 0
	last := f.desc.Size - 1
	if ranged {
		last = min(f.cfg.chunkSize, f.desc.Size) - 1
	}
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		var err error
		if ranged {
			resp, err = f.get(ctx, 0, last)
		} else {
			resp, err = f.get(ctx, -1, -1)
		}
		if err == nil {
			break
		}
		if err := f.retry(ctx, err, 0, attempt); err != nil {
			return nil, err
		}
	}
	if resp.StatusCode == http.StatusPartialContent {
		return newRangedReader(ctx, cancel, f, resp), nil
	}
	if ranged {
		klog.FromContext(ctx).V(2).Info("Registry ignores Range; streaming blob", "digest", f.desc.Digest, "size", f.desc.Size)
	}
	// As remote does: a Content-Length that disagrees with the descriptor
	// fails now, not after the whole body went by.
	if resp.ContentLength >= 0 && resp.ContentLength != f.desc.Size {
		drop(resp)
		return nil, fmt.Errorf("GET: Content-Length %d does not match the descriptor's size %d",
			resp.ContentLength, f.desc.Size)
	}
	return &streamReader{f: f, ctx: ctx, cancel: cancel, body: resp.Body}, nil
}

// get requests bytes first through last of the blob (first < 0: all of
// it). The answer is a 200 for the whole blob when first < 0, else a 206
// whose Content-Range and Content-Length name exactly the bytes asked for;
// for a range, a 200 is returned as is and the caller decides. Every other
// answer is an error, classified like remote's.
func (f *blobFetch) get(ctx context.Context, first, last int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, err
	}
	if first >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", first, last))
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, classify(redact(err)) // a failed token refresh is a transport.Error
	}
	if err := transport.CheckError(resp, http.StatusOK, http.StatusPartialContent); err != nil {
		drop(resp)
		return nil, classify(err)
	}
	if resp.StatusCode == http.StatusPartialContent {
		if first < 0 {
			drop(resp)
			return nil, errors.New("GET: the registry answered a request for the whole blob with 206 Partial Content")
		}
		if err := f.checkPartial(resp, first, last); err != nil {
			drop(resp)
			return nil, err
		}
	}
	return resp, nil
}

// checkPartial refuses a 206 that is not exactly the range asked for: a
// server may legally send less or coalesce, but reassembly (and the bound on
// what is buffered) relies on each answer being the bytes requested.
func (f *blobFetch) checkPartial(resp *http.Response, first, last int64) error {
	h := resp.Header.Get("Content-Range")
	cr, err := parseContentRange(h)
	if err != nil {
		return fmt.Errorf("GET bytes %d-%d: %w", first, last, err)
	}
	if cr.first != first || cr.last != last {
		return fmt.Errorf("GET bytes %d-%d: the registry sent bytes %d-%d", first, last, cr.first, cr.last)
	}
	if cr.size >= 0 && cr.size != f.desc.Size {
		return fmt.Errorf("GET: the registry says it is %d bytes; the descriptor declares %d", cr.size, f.desc.Size)
	}
	if n := last - first + 1; resp.ContentLength >= 0 && resp.ContentLength != n {
		return fmt.Errorf("GET bytes %d-%d: Content-Length %d for a range of %d bytes",
			first, last, resp.ContentLength, n)
	}
	return nil
}

// retry decides what follows a failed request or a dropped connection at
// byte off of the blob, attempt resumes having been made already: nil after
// a pause if the fetch should resume, else the error to return. Only
// network failures are resumed; an HTTP error status has already had the
// transport's retries, and a protocol violation would only repeat.
func (f *blobFetch) retry(ctx context.Context, cause error, off int64, attempt int) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if !resumable(cause) {
		return cause
	}
	if attempt >= f.cfg.retries {
		if attempt == 0 {
			return cause
		}
		return fmt.Errorf("giving up after %d resumes: %w", attempt, cause)
	}
	delay := f.cfg.retryDelay // doubled for each resume before, up to maxRetryDelay
	for i := 0; i < attempt && delay < maxRetryDelay; i++ {
		delay *= 2
	}
	delay = min(delay, maxRetryDelay)
	// Up to a quarter more, so the connections of a blob that all dropped
	// together do not all come back in the same instant.
	delay += rand.N(delay/4 + 1)
	klog.FromContext(ctx).V(2).Info("Resuming blob fetch", "digest", f.desc.Digest, "offset", off,
		"attempt", attempt+1, "delay", delay, "err", cause)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// errDropped wraps a body read that ended before the bytes asked for.
type errDropped struct {
	off int64
	err error
}

func (e *errDropped) Error() string {
	return fmt.Sprintf("connection dropped at byte %d: %v", e.off, e.err)
}
func (e *errDropped) Unwrap() error { return e.err }

// resumable tells errors worth another request: a dropped body or a failed
// round trip, but not a refused redirect, a certificate the server will
// present again, an HTTP error (the transport has retried those that may
// pass, and a failed token refresh arrives as one), or an answer that broke
// the protocol.
func resumable(err error) bool {
	var dropped *errDropped
	if errors.As(err, &dropped) {
		return true
	}
	var uerr *url.Error
	var terr *transport.Error
	if !errors.As(err, &uerr) || errors.As(err, &terr) {
		return false
	}
	var (
		hostErr  x509.HostnameError
		authErr  x509.UnknownAuthorityError
		certErr  x509.CertificateInvalidError
		verifErr *tls.CertificateVerificationError
		recErr   tls.RecordHeaderError
	)
	return !errors.Is(err, errRedirectRefused) && !errors.As(err, &hostErr) && !errors.As(err, &authErr) &&
		!errors.As(err, &certErr) && !errors.As(err, &verifErr) && !errors.As(err, &recErr)
}

// drop closes a response the fetch will not use. Its close error says only
// that the connection is gone, which costs nothing: the next request makes
// another.
func drop(resp *http.Response) { _ = resp.Body.Close() }

// redact hides query parameters of a URL in err: a redirect to object
// storage carries its signature there.
func redact(err error) error {
	var uerr *url.Error
	if !errors.As(err, &uerr) {
		return err
	}
	u, perr := url.Parse(uerr.URL)
	if perr != nil || u.RawQuery == "" {
		return err
	}
	u.RawQuery = "REDACTED"
	return &url.Error{Op: uerr.Op, URL: u.Redacted(), Err: uerr.Err}
}

// streamReader reads the blob as one response body. When the connection
// drops it asks for the rest (bytes off-) and goes on if the registry sends
// a 206 for exactly that; a registry that answers with anything else cannot
// resume and the read fails with the original error. It is read by one
// goroutine and starts none.
type streamReader struct {
	f       *blobFetch
	ctx     context.Context
	cancel  context.CancelCauseFunc
	body    io.ReadCloser
	off     int64 // bytes returned so far
	resumes int
	pending *errDropped // a drop seen with bytes that were returned first
	err     error       // sticky
}

func (s *streamReader) Read(p []byte) (int, error) {
	for {
		if s.err != nil {
			return 0, s.err
		}
		if s.pending != nil {
			if s.err = s.resume(s.pending); s.err != nil {
				return 0, s.err
			}
			s.pending = nil
		}
		n, err := s.body.Read(p)
		s.off += int64(n)
		switch {
		case err == nil:
			return n, nil
		case s.off >= s.f.desc.Size:
			// Every byte is in; a failure after them changes nothing, and
			// the digest (or, past Size, the size) is the verifier's to check.
			return n, io.EOF
		case s.ctx.Err() != nil:
			s.err = context.Cause(s.ctx)
			return n, s.err
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // a body without Content-Length that stopped short
		}
		s.pending = &errDropped{off: s.off, err: err}
		if n > 0 {
			return n, nil
		}
	}
}

func (s *streamReader) resume(dropped *errDropped) error {
	if s.off >= s.f.desc.Size {
		return dropped // nothing left to ask for; the verifier reports the size
	}
	var cause error = dropped
	for {
		if err := s.f.retry(s.ctx, cause, s.off, s.resumes); err != nil {
			return err
		}
		s.resumes++
		resp, err := s.f.get(s.ctx, s.off, s.f.desc.Size-1)
		if err != nil {
			cause = err
			continue
		}
		if resp.StatusCode != http.StatusPartialContent {
			drop(resp)
			return fmt.Errorf("%w; the registry cannot resume: it answered a range request with %s", dropped, resp.Status)
		}
		_ = s.body.Close() // the dropped connection's: nothing of it is used
		s.body = resp.Body
		return nil
	}
}

func (s *streamReader) Close() error {
	err := s.body.Close()
	s.cancel(errClosed)
	return err
}

// contentRange is a parsed Content-Range header of a 206: bytes first
// through last of size (-1 when the server wrote "*").
type contentRange struct {
	first, last, size int64
}

// parseContentRange parses "bytes FIRST-LAST/SIZE" or "bytes FIRST-LAST/*"
// (RFC 9110 section 14.4), strictly: digits only, FIRST <= LAST < SIZE.
func parseContentRange(h string) (contentRange, error) {
	bad := func(why string) (contentRange, error) {
		return contentRange{}, fmt.Errorf("bad Content-Range %q: %s", h, why)
	}
	const unit = "bytes "
	if len(h) < len(unit) || lowerASCII(h[:len(unit)]) != unit { // the unit is case-insensitive
		return bad("want bytes FIRST-LAST/SIZE")
	}
	rest := h[len(unit):]
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("want bytes FIRST-LAST/SIZE")
	}
	first, last, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("want bytes FIRST-LAST/SIZE")
	}
	var cr contentRange
	var err error
	if cr.first, err = parseDigits(first); err != nil {
		return bad("first byte: " + err.Error())
	}
	if cr.last, err = parseDigits(last); err != nil {
		return bad("last byte: " + err.Error())
	}
	if cr.first > cr.last {
		return bad("first byte after last")
	}
	cr.size = -1
	if size != "*" {
		if cr.size, err = parseDigits(size); err != nil {
			return bad("size: " + err.Error())
		}
		if cr.last >= cr.size {
			return bad("last byte beyond size")
		}
	}
	return cr, nil
}

func (cr contentRange) String() string {
	size := "*"
	if cr.size >= 0 {
		size = strconv.FormatInt(cr.size, 10)
	}
	return fmt.Sprintf("bytes %d-%d/%s", cr.first, cr.last, size)
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// parseDigits parses a non-negative decimal integer of at most 18 digits:
// no sign, space or underscore, and no overflow of int64.
func parseDigits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("want 1 to 18 digits")
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("want digits")
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, nil
}
