package node

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
)

func TestClassifyStore(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("publish volume v: %w", err) }
	for _, tt := range []struct {
		err  error
		want codes.Code
	}{
		{wrap(layers.ErrTooManyLayers), codes.FailedPrecondition},
		{wrap(layers.ErrDigestMismatch), codes.FailedPrecondition},
		{wrap(layers.ErrInvalid), codes.FailedPrecondition},
		{wrap(layers.ErrVolumeNotFound), codes.NotFound},
		{wrap(layers.ErrLayerMissing), codes.Unavailable},
		{errors.New("something else"), codes.Internal},
	} {
		if got := rpc.Code(tt.err, classifyStore); got != tt.want {
			t.Errorf("Code(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
