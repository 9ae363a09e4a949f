//go:build !linux

package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Pack needs Linux: it reads overlayfs uppers with *at system calls and
// read leases.
func Pack(ctx context.Context, dir string, w io.Writer, opts PackOptions) (PackStats, error) {
	return PackStats{}, fmt.Errorf("archive: Pack: %w", errors.ErrUnsupported)
}
