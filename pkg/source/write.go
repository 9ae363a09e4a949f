package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Destination is where an image is written: a tag of an OCI image layout
// or of a registry repository, checked by ParseDestination before anything
// is made to write there.
type Destination struct {
	ref  reference // a tag: remote is a name.Tag, or layout and tag are set
	opts Options
}

// ParseDestination reads ref, oci:/PATH:TAG or REGISTRY/REPOSITORY:TAG,
// with the rules Resolve reads references by (fully qualified; plain HTTP
// only for a host in opts.Insecure).
func ParseDestination(ref string, opts Options) (Destination, error) {
	insecure, err := opts.insecureHosts()
	if err != nil {
		return Destination{}, err
	}
	r, err := parseReference(ref, func(host string) bool { return insecure[host] })
	if err != nil {
		return Destination{}, err
	}
	if _, isTag := r.remote.(name.Tag); r.remote != nil && !isTag || r.remote == nil && r.tag == "" {
		return Destination{}, withKind(ErrInvalidReference, fmt.Errorf(
			"image reference %q: name the tag to write, oci:/PATH:TAG or REGISTRY/REPOSITORY:TAG", ref))
	}
	return Destination{ref: r, opts: opts}, nil
}

func (d Destination) String() string { return d.ref.String() }

// Write writes img to d and returns the digest-pinned reference of what it
// wrote. A missing or empty layout directory becomes a new layout, and a
// layout's tag is moved to img. A registry is reached with the keychain and
// the transport Resolve uses, so a push obeys the same TLS rule as a pull.
func (d Destination) Write(ctx context.Context, img v1.Image) (string, error) {
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	if d.ref.remote != nil {
		insecure, err := d.opts.insecureHosts()
		if err != nil {
			return "", err
		}
		if err := remote.Write(d.ref.remote, img, remote.WithContext(ctx), remote.WithAuthFromKeychain(d.opts.keychain()),
			remote.WithTransport(d.opts.baseTransport(insecure))); err != nil {
			return "", classify(err)
		}
		return d.ref.pinned(digest), nil
	}
	p, err := layout.FromPath(d.ref.layout)
	if err != nil {
		if entries, rerr := os.ReadDir(d.ref.layout); rerr == nil && len(entries) > 0 {
			return "", fmt.Errorf("%s holds files but is not an OCI image layout: %w", d.ref.layout, err)
		} else if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return "", rerr
		}
		if p, err = layout.Write(d.ref.layout, empty.Index); err != nil {
			return "", err
		}
	}
	tagged := map[string]string{refNameAnnotation: d.ref.tag}
	if err := p.ReplaceImage(img, match.Annotation(refNameAnnotation, d.ref.tag), layout.WithAnnotations(tagged)); err != nil {
		return "", err
	}
	return d.ref.pinned(digest), nil
}
