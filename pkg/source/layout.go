package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// refNameAnnotation names a manifest in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// layoutStore reads an OCI image layout. Nothing in a layout checks itself,
// so every blob is hashed here, manifests included.
type layoutStore struct {
	ref  reference
	path layout.Path
}

func openLayout(ref reference) (*layoutStore, error) {
	p, err := layout.FromPath(ref.layout)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, withKind(ErrNotFound, fmt.Errorf("%s is not an OCI image layout: %w", ref.layout, err))
		}
		return nil, fmt.Errorf("opening OCI layout %s: %w", ref.layout, err)
	}
	return &layoutStore{ref: ref, path: p}, nil
}

func (s *layoutStore) root(ctx context.Context) (v1.Descriptor, []byte, error) {
	var d v1.Descriptor
	if s.ref.digest != (v1.Hash{}) {
		// A pinned reference may name a manifest inside a nested index, so
		// look it up by content address rather than in index.json.
		raw, err := s.readManifest(ctx, s.ref.digest, -1)
		if err != nil {
			return v1.Descriptor{}, nil, err
		}
		return v1.Descriptor{Digest: s.ref.digest, Size: int64(len(raw))}, raw, nil
	}
	idx, err := s.index()
	if err != nil {
		return v1.Descriptor{}, nil, err
	}
	if d, err = pickTagged(idx, s.ref.tag, s.ref.layout); err != nil {
		return v1.Descriptor{}, nil, err
	}
	raw, err := s.readManifest(ctx, d.Digest, d.Size)
	return d, raw, err
}

func (s *layoutStore) manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	return s.readManifest(ctx, d.Digest, d.Size)
}

func (s *layoutStore) blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	rc, err := s.path.Blob(d.Digest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, withKind(ErrNotFound, fmt.Errorf("OCI layout %s has no blob %s: %w", s.ref.layout, d.Digest, err))
	}
	return rc, false, err
}

// readManifest reads the manifest blob h, checked against h and, when
// known (size >= 0), the size its descriptor declares.
func (s *layoutStore) readManifest(ctx context.Context, h v1.Hash, size int64) ([]byte, error) {
	if size < 0 {
		fi, err := s.stat(h)
		if err != nil {
			return nil, err
		}
		size = fi.Size()
	}
	return readBlob(ctx, s, v1.Descriptor{Digest: h, Size: size}, maxManifestSize)
}

func (s *layoutStore) stat(h v1.Hash) (fi fs.FileInfo, err error) {
	rc, err := s.path.Blob(h)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, withKind(ErrNotFound, fmt.Errorf("OCI layout %s has no manifest %s", s.ref.layout, h))
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := rc.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("OCI layout blob %s: %w", h, cerr))
		}
	}()
	f, ok := rc.(interface{ Stat() (fs.FileInfo, error) })
	if !ok {
		return nil, fmt.Errorf("OCI layout blob %s: cannot stat %T", h, rc)
	}
	return f.Stat()
}

func (s *layoutStore) index() (*v1.IndexManifest, error) {
	ii, err := s.path.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("reading %s/index.json: %w", s.ref.layout, err)
	}
	idx, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("reading %s/index.json: %w", s.ref.layout, err)
	}
	return idx, nil
}

// pickTagged finds the manifest named tag in a layout's index.json, or the
// only manifest when tag is empty.
func pickTagged(idx *v1.IndexManifest, tag, dir string) (v1.Descriptor, error) {
	var tags []string
	var found []v1.Descriptor
	for _, d := range idx.Manifests {
		name := d.Annotations[refNameAnnotation]
		if name != "" {
			tags = append(tags, name)
		}
		if tag == "" || name == tag {
			found = append(found, d)
		}
	}
	slices.Sort(tags)
	tags = slices.Compact(tags)
	present := "none"
	if len(tags) > 0 {
		present = strings.Join(tags, ", ")
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(idx.Manifests) == 0:
		return v1.Descriptor{}, withKind(ErrNotFound, fmt.Errorf("OCI layout %s holds no images", dir))
	case len(found) == 0:
		return v1.Descriptor{}, withKind(ErrNotFound, fmt.Errorf("OCI layout %s has no image tagged %q; tags present: %s", dir, tag, present))
	case tag == "":
		return v1.Descriptor{}, withKind(ErrInvalidReference, fmt.Errorf(
			"OCI layout %s holds %d images; name one as oci:%s:TAG (tags present: %s)", dir, len(found), dir, present))
	}
	// Tools that re-tag append without removing the old entry; identical
	// entries are harmless, different ones are a real ambiguity.
	for _, d := range found[1:] {
		if d.Digest != found[0].Digest {
			return v1.Descriptor{}, withKind(ErrInvalidReference, fmt.Errorf(
				"OCI layout %s has %d different images tagged %q", dir, len(found), tag))
		}
	}
	return found[0], nil
}
