package source

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Layer is one layer of a resolved image.
type Layer struct {
	Digest    v1.Hash         // digest of the blob as stored (compressed)
	DiffID    v1.Hash         // digest of the uncompressed tar, from the config's rootfs.diff_ids
	MediaType types.MediaType // tells the compression
	Size      int64           // size of the blob as stored
	Source    string          // pinned reference of the image it came from

	blob store
}

// Open returns the layer's blob as stored (compressed). The reader checks
// the bytes against Size and Digest as they go by: the read that reaches the
// end returns an error instead of io.EOF if they do not match, and a blob
// longer than Size fails as soon as it passes Size. Consumers must therefore
// read to io.EOF before trusting what they wrote. Close releases the
// connection or file.
func (l Layer) Open(ctx context.Context) (io.ReadCloser, error) {
	if l.blob == nil {
		return nil, fmt.Errorf("layer %s was not obtained from Resolve", l.Digest)
	}
	return openBlob(ctx, l.blob, v1.Descriptor{Digest: l.Digest, Size: l.Size, MediaType: l.MediaType})
}

func openBlob(ctx context.Context, s store, d v1.Descriptor) (io.ReadCloser, error) {
	rc, checked, err := s.blob(ctx, d)
	if err != nil {
		return nil, fmt.Errorf("opening blob %s: %w", d.Digest, err)
	}
	return newVerifier(rc, d, checked)
}

// verifier enforces a blob's size and, unless the reader beneath already
// does, its digest. A store whose reader hashes what it returns and fails
// at EOF (as go-containerregistry's remote blob readers do) says so with
// checked, since hashing again would double the CPU cost of every pull;
// neither of ours does today: registry blobs are reassembled from ranges
// or resumed streams by our own fetcher (fetch.go), and layout blobs are
// files. The size is always checked here, and the reader beneath is always
// read to its own EOF so any check of its own runs.
type verifier struct {
	rc   io.ReadCloser
	want v1.Descriptor
	h    hash.Hash // nil when rc checks the digest
	n    int64
	err  error // sticky
}

func newVerifier(rc io.ReadCloser, d v1.Descriptor, checked bool) (io.ReadCloser, error) {
	v := &verifier{rc: rc, want: d}
	if !checked {
		h, err := v1.Hasher(d.Digest.Algorithm)
		if err != nil {
			return nil, errors.Join(withKind(ErrUnsupported, fmt.Errorf("blob %s: %w", d.Digest, err)), rc.Close())
		}
		v.h = h
	}
	return v, nil
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.rc.Read(p)
	if v.n+int64(n) > v.want.Size {
		n = int(v.want.Size - v.n)
		v.n = v.want.Size
		v.err = fmt.Errorf("blob %s is longer than the %d bytes its descriptor declares", v.want.Digest, v.want.Size)
		return n, v.err
	}
	v.n += int64(n)
	if v.h != nil {
		v.h.Write(p[:n])
	}
	switch {
	case err == nil:
		return n, nil
	case !errors.Is(err, io.EOF):
		v.err = fmt.Errorf("reading blob %s: %w", v.want.Digest, classify(err))
	case v.n != v.want.Size:
		v.err = fmt.Errorf("blob %s ended after %d bytes; its descriptor declares %d", v.want.Digest, v.n, v.want.Size)
	case v.h != nil:
		if got := fmt.Sprintf("%x", v.h.Sum(nil)); got != v.want.Digest.Hex {
			v.err = fmt.Errorf("blob %s has digest %s:%s", v.want.Digest, v.want.Digest.Algorithm, got)
		}
	}
	if v.err == nil {
		v.err = io.EOF
	}
	return n, v.err
}

func (v *verifier) Close() error { return v.rc.Close() }
