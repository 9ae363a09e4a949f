//go:build !linux

package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Apply needs Linux: it writes overlayfs whiteouts and xattrs with *at
// system calls.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Stats, error) {
	return Stats{}, fmt.Errorf("archive: Apply: %w", errors.ErrUnsupported)
}
