package source

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registryStore reads one repository through a remote.Puller, which keeps
// the authenticated transport so opening each layer does not ping and log
// in again.
type registryStore struct {
	ref    name.Reference
	puller *remote.Puller
}

func (s *registryStore) root(ctx context.Context) (v1.Descriptor, []byte, error) {
	return s.get(ctx, s.ref)
}

func (s *registryStore) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	got, raw, err := s.get(ctx, s.ref.Context().Digest(d.Digest.String()))
	if err != nil {
		return nil, err
	}
	// remote checks the bytes hash to the digest asked for; the size is ours.
	if got.Digest != d.Digest || got.Size != d.Size {
		return nil, fmt.Errorf("manifest %s: registry returned %d bytes with digest %s, want %d bytes",
			d.Digest, got.Size, got.Digest, d.Size)
	}
	return raw, nil
}

func (s *registryStore) get(ctx context.Context, ref name.Reference) (v1.Descriptor, []byte, error) {
	desc, err := s.puller.Get(ctx, ref)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("fetching manifest %s: %w", ref, classify(err))
	}
	if desc.Size > maxManifestSize {
		return v1.Descriptor{}, nil, fmt.Errorf("manifest %s is %d bytes; the limit is %d", ref, desc.Size, maxManifestSize)
	}
	return desc.Descriptor, desc.Manifest, nil
}

func (s *registryStore) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, bool, error) {
	l, err := s.puller.Layer(ctx, s.ref.Context().Digest(d.Digest.String()))
	if err != nil {
		return nil, false, classify(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, false, classify(err)
	}
	return rc, true, nil
}
