package source

import (
	"context"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Image is a resolved image.
type Image struct {
	Ref    string  // as given
	Pinned string  // REGISTRY/REPOSITORY@sha256:... or oci:PATH@sha256:..., naming Digest
	Digest v1.Hash // the image manifest's digest; for an index, the chosen platform's
	Layers []Layer // bottom first
}

// Resolve looks ref up and returns its layers. Blobs are not read, except
// the manifests and the image config.
func Resolve(ctx context.Context, ref string, opts Options) (*Image, error) {
	insecure, err := opts.insecureHosts()
	if err != nil {
		return nil, err
	}
	r, err := parseReference(ref, func(host string) bool { return insecure[strings.ToLower(host)] })
	if err != nil {
		return nil, err
	}
	s, err := openStore(r, opts, insecure)
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", ref, err)
	}
	img, err := resolve(ctx, s, r, opts.platform())
	if err != nil {
		return nil, fmt.Errorf("resolving %s: %w", ref, err)
	}
	img.Ref = ref
	return img, nil
}

func openStore(r reference, opts Options, insecure map[string]bool) (store, error) {
	if r.remote == nil {
		return openLayout(r)
	}
	return newRegistryStore(r.remote, opts, insecure)
}

func resolve(ctx context.Context, s store, r reference, platform v1.Platform) (*Image, error) {
	desc, raw, err := s.root(ctx)
	if err != nil {
		return nil, err
	}
	mt := manifestMediaType(desc.MediaType, raw)
	if isIndex(mt) {
		idx, err := parseIndex(raw)
		if err != nil {
			return nil, err
		}
		indexDigest := desc.Digest
		if desc, err = selectManifest(idx, platform); err != nil {
			return nil, fmt.Errorf("index %s: %w", indexDigest, err)
		}
		if raw, err = s.manifest(ctx, desc); err != nil {
			return nil, err
		}
		if mt = manifestMediaType(desc.MediaType, raw); isIndex(mt) {
			return nil, withKind(ErrUnsupported, fmt.Errorf(
				"manifest %s for platform %s is itself an index; nested indexes are not supported", desc.Digest, platformString(platform)))
		}
	}
	m, err := parseImageManifest(mt, raw)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	rawCfg, err := readBlob(ctx, s, m.Config, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cfg, err := parseConfig(rawCfg)
	if err != nil {
		return nil, err
	}
	layers, err := layerList(m, cfg)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	pinned := r.pinned(desc.Digest)
	for i := range layers {
		layers[i].Source = pinned
		layers[i].blob = s
	}
	return &Image{Pinned: pinned, Digest: desc.Digest, Layers: layers}, nil
}
