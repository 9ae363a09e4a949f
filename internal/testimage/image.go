package testimage

import (
	"encoding/json"
	"fmt"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image builds an OCI image of layers, bottom first, for linux/amd64. The
// config holds only what a consumer of layers needs: the platform and
// rootfs.diff_ids.
func Image(layers ...v1.Layer) (v1.Image, error) {
	cfg := v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: DefaultModTime},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{}},
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Layers: []v1.Descriptor{}}
	byDigest := make(map[v1.Hash]v1.Layer, len(layers))
	for i, l := range layers {
		d, err := partial.Descriptor(l)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		diffID, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, diffID)
		m.Layers = append(m.Layers, *d)
		byDigest[d.Digest] = l
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawCfg)), Digest: sha(rawCfg)}
	rawManifest, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&image{config: rawCfg, manifest: rawManifest, layers: byDigest})
}

// Index builds an OCI image index of images keyed by platform in the form
// os/arch[/variant] ("linux/arm64/v8"). v1.Platform holds slices and cannot
// be a map key, hence the string. Entries are sorted by key so the index
// digest does not depend on map order; the images themselves are not
// changed, so their config may name another platform than their key.
func Index(images map[string]v1.Image) (v1.ImageIndex, error) {
	keys := make([]string, 0, len(images))
	for k := range images {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, k := range keys {
		p, err := v1.ParsePlatform(k)
		if err != nil {
			return nil, fmt.Errorf("platform %q: %w", k, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        images[k],
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	// Compute now so a bad image fails here, not in whoever uses the index.
	if _, err := idx.Digest(); err != nil {
		return nil, err
	}
	return idx, nil
}

type image struct {
	config, manifest []byte
	layers           map[v1.Hash]v1.Layer
}

func (i *image) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *image) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *image) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

func (i *image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("image has no layer %s", h)
}
