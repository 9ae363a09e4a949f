package source

import (
	"context"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// store is where one image's manifests and blobs come from: a registry
// repository or an OCI layout.
type store interface {
	// root returns the manifest the reference names, with the descriptor it
	// was served under. A digest in the reference has been checked.
	root(ctx context.Context) (v1.Descriptor, []byte, error)
	// manifest returns the manifest d describes, checked against d.
	manifest(ctx context.Context, d v1.Descriptor) ([]byte, error)
	// blob opens the blob d describes. checked reports whether the reader
	// itself fails at EOF when the content does not hash to d.Digest.
	blob(ctx context.Context, d v1.Descriptor) (rc io.ReadCloser, checked bool, err error)
}

// readBlob reads a small blob whole, checked against d.
func readBlob(ctx context.Context, s store, d v1.Descriptor, limit int64) (b []byte, err error) {
	if d.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes; the limit is %d", d.Digest, d.Size, limit)
	}
	rc, err := openBlob(ctx, s, d)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := rc.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("blob %s: %w", d.Digest, cerr))
		}
	}()
	return io.ReadAll(rc)
}
