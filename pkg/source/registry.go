package source

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// registryStore reads one repository. Manifests come through a
// remote.Puller, blobs through our own fetcher (fetch.go), both over one
// authenticated session, so opening each layer does not ping and log in
// again.
type registryStore struct {
	ref      name.Reference
	opts     Options
	insecure map[string]bool
	fetch    fetchConfig
	// slots caps the blobs open at once (Options.ParallelBlobs): a token is
	// taken by Open and given back by Close.
	slots chan struct{}

	mu   sync.Mutex
	sess *session // nil until the first request
}

func newRegistryStore(ref name.Reference, opts Options, insecure map[string]bool) (*registryStore, error) {
	fc, err := opts.fetchConfig()
	if err != nil {
		return nil, err
	}
	return &registryStore{ref: ref, opts: opts, insecure: insecure, fetch: fc, slots: make(chan struct{}, fc.parallelBlobs)}, nil
}

// session returns the store's session, logging in on first use. A failed
// login is not kept: the next call, perhaps with a live context, tries again.
func (s *registryStore) session(ctx context.Context) (*session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		sess, err := newSession(ctx, s.ref.Context(), s.opts, s.insecure)
		if err != nil {
			return nil, err
		}
		s.sess = sess
	}
	return s.sess, nil
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
	sess, err := s.session(ctx)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("fetching manifest %s: %w", ref, classify(err))
	}
	desc, err := sess.puller.Get(ctx, ref)
	if err != nil {
		return v1.Descriptor{}, nil, fmt.Errorf("fetching manifest %s: %w", ref, classify(err))
	}
	if desc.Size > maxManifestSize {
		return v1.Descriptor{}, nil, fmt.Errorf("manifest %s is %d bytes; the limit is %d", ref, desc.Size, maxManifestSize)
	}
	return desc.Descriptor, desc.Manifest, nil
}

// blob opens d with our fetcher, which hashes nothing: checked is false and
// the verifier above hashes the bytes, ranged or streamed, once.
func (s *registryStore) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, bool, error) {
	sess, err := s.session(ctx)
	if err != nil {
		return nil, false, classify(err)
	}
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	repo := s.ref.Context()
	f := &blobFetch{
		client: sess.client,
		url:    fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d.Digest),
		desc:   d,
		cfg:    s.fetch,
	}
	rc, err := f.open(ctx)
	if err != nil {
		<-s.slots
		return nil, false, err
	}
	return &releaser{ReadCloser: rc, release: func() { <-s.slots }}, false, nil
}

// releaser gives the store's slot back on the first Close.
type releaser struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (r *releaser) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(r.release)
	return err
}
