package source

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestClassify(t *testing.T) {
	diag := func(c transport.ErrorCode) []transport.Diagnostic { return []transport.Diagnostic{{Code: c}} }
	for _, tc := range []struct {
		name string
		err  error
		want error // nil: unclassified
	}{
		{"manifest unknown", &transport.Error{StatusCode: 404, Errors: diag(transport.ManifestUnknownErrorCode)}, ErrNotFound},
		{"name unknown", &transport.Error{StatusCode: 404, Errors: diag(transport.NameUnknownErrorCode)}, ErrNotFound},
		{"blob unknown", &transport.Error{StatusCode: 404, Errors: diag(transport.BlobUnknownErrorCode)}, ErrNotFound},
		{"bare 404", &transport.Error{StatusCode: http.StatusNotFound}, ErrNotFound},
		{"401", &transport.Error{StatusCode: http.StatusUnauthorized}, ErrUnauthorized},
		{"403", &transport.Error{StatusCode: http.StatusForbidden}, ErrUnauthorized},
		{"denied as 404", &transport.Error{StatusCode: 404, Errors: diag(transport.DeniedErrorCode)}, ErrUnauthorized},
		{"unauthorized code", &transport.Error{StatusCode: 400, Errors: diag(transport.UnauthorizedErrorCode)}, ErrUnauthorized},
		{"wrapped", fmt.Errorf("ctx: %w", &transport.Error{StatusCode: 404}), ErrNotFound},
		{"500", &transport.Error{StatusCode: 500}, nil},
		{"other", errors.New("dial tcp: refused"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err)
			if got.Error() != tc.err.Error() {
				t.Errorf("message changed: %q -> %q", tc.err, got)
			}
			var te *transport.Error
			if errors.As(tc.err, &te) && !errors.As(got, &te) {
				t.Error("original error no longer reachable with errors.As")
			}
			for _, s := range []error{ErrNotFound, ErrUnauthorized} {
				if errors.Is(got, s) != (s == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", got, s, s != tc.want)
				}
			}
		})
	}
}
