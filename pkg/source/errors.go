package source

import (
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Errors returned by Resolve and Layer.Open wrap one of these when the cause
// is known, together with the original error, so both errors.Is and the
// original message keep working.
var (
	ErrNotFound         = errors.New("not found")
	ErrUnauthorized     = errors.New("unauthorized")
	ErrInvalidReference = errors.New("invalid reference")
	ErrUnsupported      = errors.New("unsupported")
)

// kindError attaches a sentinel to an error without changing its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

func withKind(kind, err error) error {
	if err == nil || errors.Is(err, kind) {
		return err
	}
	return &kindError{kind: kind, err: err}
}

// classify maps registry protocol errors onto the package's sentinels.
// Error codes win over status codes: registries disagree on which status
// goes with DENIED, but not on what DENIED means.
func classify(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
			return withKind(ErrNotFound, err)
		case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
			return withKind(ErrUnauthorized, err)
		}
	}
	switch te.StatusCode {
	case http.StatusNotFound:
		return withKind(ErrNotFound, err)
	case http.StatusUnauthorized, http.StatusForbidden:
		return withKind(ErrUnauthorized, err)
	}
	return err
}
