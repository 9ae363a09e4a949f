package driver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

func TestCodeOf(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("publish volume v: %w", err) }
	tests := []struct {
		err  error
		want codes.Code
	}{
		{wrap(context.DeadlineExceeded), codes.DeadlineExceeded},
		{wrap(context.Canceled), codes.Canceled},
		{wrap(&fs.PathError{Op: "write", Path: "/x", Err: unix.ENOSPC}), codes.ResourceExhausted},
		{wrap(unix.EDQUOT), codes.ResourceExhausted},
		{wrap(compose.ErrLayerSetNotFound), codes.FailedPrecondition},
		{wrap(catalog.ErrNotReady), codes.FailedPrecondition},
		{wrap(compose.ErrCycle), codes.FailedPrecondition},
		{wrap(compose.ErrTooManyLayers), codes.FailedPrecondition},
		{wrap(layers.ErrTooManyLayers), codes.FailedPrecondition},
		{wrap(layers.ErrDigestMismatch), codes.FailedPrecondition},
		{wrap(source.ErrUnauthorized), codes.FailedPrecondition},
		{wrap(source.ErrNotFound), codes.FailedPrecondition},
		{wrap(layers.ErrVolumeNotFound), codes.NotFound},
		{wrap(layers.ErrLayerMissing), codes.Unavailable},
		{wrap(&net.OpError{Op: "dial", Net: "tcp", Err: unix.ECONNREFUSED}), codes.Unavailable},
		{wrap(status.Error(codes.Aborted, "busy")), codes.Aborted},
		{errors.New("something else"), codes.Internal},
	}
	for _, tt := range tests {
		if got := codeOf(tt.err); got != tt.want {
			t.Errorf("codeOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestToStatusAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-ctx.Done()
	// Whatever failed once the deadline passed failed because of it.
	err := toStatus(ctx, errors.New("read tcp: use of closed network connection"))
	if s, _ := status.FromError(err); s.Code() != codes.DeadlineExceeded || s.Message() != "read tcp: use of closed network connection" {
		t.Errorf("got %v", err)
	}
	if toStatus(context.Background(), nil) != nil {
		t.Error("nil error became a status")
	}
}
