package layers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/source"
)

// ImageOptions say what the image of a commit says of itself, and how the
// blobs of its lower layers are reached.
type ImageOptions struct {
	// Created is the image's creation time and that of each history
	// entry; zero means now. A fixed one makes the config reproducible.
	Created time.Time
	// Author and Comment go into the config and the committed layer's
	// history entry.
	Author, Comment string
	// Platform is the image's; nil means this node's.
	Platform *v1.Platform
	// Source reaches the images the chain's layers were pulled from.
	Source source.Options
}

// CommitImage is the image of a commit: the volume's chain, then the
// committed layer, with a config whose rootfs.diff_ids and history list
// them in that order.
//
// Each layer is its original blob, byte for byte, so that its digest and
// diff_id are those of the image it came from: a registry that has the
// base image holds them already, and a node that has the chain cached
// stores only the new layer. A layer a commit made is read from the blob
// the store kept of it; a pulled one is fetched again by digest from the
// image it was pulled from (LayerMeta.Source), checked against its digest
// as it streams (a commit's blob of the same content stands in when that
// image is out of reach). Packing the stored directories again instead would give
// other bytes, so other digests and diff_ids the store does not know (a
// node would extract the whole chain again), and could not give back what
// extraction left out (device nodes).
//
// The image reads blobs when it is written; the store's layers must stay
// until then: write it inside Hold (the committed volume holds its chain
// anyway; the committed layer has no user yet).
func (s *Store) CommitImage(ctx context.Context, res *CommitResult, opts ImageOptions) (v1.Image, error) {
	created := opts.Created
	if created.IsZero() {
		created = time.Now().UTC()
	}
	platform := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if opts.Platform != nil {
		platform = *opts.Platform
	}
	img := &commitImage{blobs: map[v1.Hash]imageBlob{}}
	cfg := v1.ConfigFile{
		Architecture: platform.Architecture,
		OS:           platform.OS,
		OSVersion:    platform.OSVersion,
		Variant:      platform.Variant,
		OSFeatures:   platform.OSFeatures,
		Created:      v1.Time{Time: created},
		Author:       opts.Author,
		RootFS:       v1.RootFS{Type: "layers"},
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
	resolved := map[string]*source.Image{}
	for _, d := range res.Layers() {
		b, history, err := s.imageLayer(ctx, d, res, opts, resolved)
		if err != nil {
			return nil, err
		}
		history.Created = v1.Time{Time: created}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, d)
		cfg.History = append(cfg.History, history)
		b.desc.MediaType = ociLayerType(b.desc.MediaType)
		m.Layers = append(m.Layers, b.desc)
		img.blobs[b.desc.Digest] = b
	}
	var err error
	if img.config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	cd, _, err := v1.SHA256(bytes.NewReader(img.config))
	if err != nil {
		return nil, err
	}
	m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(img.config)), Digest: cd}
	if img.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(img)
}

// imageLayer finds the blob of layer d of the commit's image and the
// history entry that tells where it came from.
func (s *Store) imageLayer(ctx context.Context, d v1.Hash, res *CommitResult, opts ImageOptions, resolved map[string]*source.Image) (imageBlob, v1.History, error) {
	if d == res.Layer.DiffID {
		created := "layerset-csi commit --volume-id " + res.VolumeID
		return imageBlob{desc: res.Layer.Descriptor(), open: res.Layer.Open},
			v1.History{CreatedBy: created, Author: opts.Author, Comment: opts.Comment}, nil
	}
	meta, err := s.LayerMeta(d)
	if err != nil {
		return imageBlob{}, v1.History{}, err
	}
	kept, err := s.LayerBlob(d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return imageBlob{}, v1.History{}, err
	}
	haveKept := err == nil
	if haveKept && (kept.Digest.String() == meta.Digest || !pulledFrom(meta)) {
		return imageBlob{desc: kept.Descriptor(), open: kept.Open}, s.history(d), nil
	}
	if !pulledFrom(meta) {
		return imageBlob{}, v1.History{}, fmt.Errorf("layer %s of the chain has no kept blob and no image it was pulled from (source %q)", d, meta.Source)
	}
	// Pulled: its own blob, from where it came, so that its digest is the
	// one registries and nodes know. A commit's blob of the same content
	// stands in when that image is out of reach.
	b, err := fetchedBlob(ctx, d, meta, opts, resolved)
	if err != nil && haveKept {
		klog.FromContext(ctx).Info("Using the blob a commit kept of a layer whose image is out of reach", "diffID", d, "source", meta.Source, "err", err)
		return imageBlob{desc: kept.Descriptor(), open: kept.Open}, s.history(d), nil
	}
	return b, s.history(d), err
}

// pulledFrom reports whether meta names an image the layer was pulled from.
func pulledFrom(meta LayerMeta) bool {
	return meta.Source != "" && !strings.HasPrefix(meta.Source, CommitSourcePrefix)
}

// fetchedBlob is layer d's blob in the image it was pulled from, opened
// when the image is written and checked against its digest as it streams.
func fetchedBlob(ctx context.Context, d v1.Hash, meta LayerMeta, opts ImageOptions, resolved map[string]*source.Image) (imageBlob, error) {
	img, ok := resolved[meta.Source]
	if !ok {
		var err error
		if img, err = source.Resolve(ctx, meta.Source, opts.Source); err != nil {
			return imageBlob{}, fmt.Errorf("layer %s of the chain: the image it was pulled from: %w", d, err)
		}
		resolved[meta.Source] = img
	}
	for _, l := range img.Layers {
		if l.DiffID == d && l.Digest.String() == meta.Digest {
			return imageBlob{
				desc: v1.Descriptor{MediaType: l.MediaType, Size: l.Size, Digest: l.Digest},
				open: func() (io.ReadCloser, error) { return l.Open(ctx) },
			}, nil
		}
	}
	return imageBlob{}, fmt.Errorf("layer %s of the chain: %s no longer holds blob %s", d, meta.Source, meta.Digest)
}

// history is the entry of a layer of the chain: where the store got it.
func (s *Store) history(d v1.Hash) v1.History {
	h := v1.History{CreatedBy: "layerset-csi: layer " + d.String()}
	if meta, err := s.LayerMeta(d); err == nil && meta.Source != "" {
		h.Comment = "from " + meta.Source
	}
	return h
}

// ociLayerType names a Docker layer media type by its OCI equivalent, so
// that an OCI manifest lists OCI types only; the blob is the same.
func ociLayerType(mt types.MediaType) types.MediaType {
	switch mt {
	case types.DockerLayer:
		return types.OCILayer
	case types.DockerUncompressedLayer:
		return types.OCIUncompressedLayer
	}
	return mt
}

// commitImage is the image CommitImage builds: its manifest and config are
// made, its layers' blobs opened when the image is written.
type commitImage struct {
	config   []byte
	manifest []byte
	blobs    map[v1.Hash]imageBlob
}

type imageBlob struct {
	desc v1.Descriptor
	open func() (io.ReadCloser, error)
}

func (i *commitImage) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *commitImage) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *commitImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (i *commitImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	b, ok := i.blobs[h]
	if !ok {
		return nil, fmt.Errorf("commit image: no layer %s", h)
	}
	return &commitLayer{b}, nil
}

type commitLayer struct{ imageBlob }

func (l *commitLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *commitLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *commitLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *commitLayer) Compressed() (io.ReadCloser, error)  { return l.open() }
func (l *commitLayer) Descriptor() (*v1.Descriptor, error) { d := l.desc; return &d, nil }
