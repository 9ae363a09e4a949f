package source

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Size limits for the JSON documents Resolve reads into memory. Manifests
// follow the distribution spec's 4 MiB floor for what registries accept;
// configs carry history and labels and get more room.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 8 << 20
)

// layerTypes are the layer media types whose blobs are tar archives the
// rest of layerset can unpack.
var layerTypes = map[types.MediaType]bool{
	types.OCILayer:                true,
	types.OCILayerZStd:            true,
	types.OCIUncompressedLayer:    true,
	types.DockerLayer:             true,
	types.DockerUncompressedLayer: true,
}

// nonDistributable layers live outside the registry, at URLs the manifest
// names; fetching them would mean trusting arbitrary hosts.
var nonDistributable = map[types.MediaType]bool{
	types.DockerForeignLayer:             true,
	types.OCIRestrictedLayer:             true,
	types.OCIUncompressedRestrictedLayer: true,
}

// manifestMediaType returns the type of a manifest. The document's own
// mediaType field wins over the Content-Type or descriptor it came with,
// because it is covered by the digest; an OCI document without one is an
// index if it lists manifests.
func manifestMediaType(declared types.MediaType, raw []byte) types.MediaType {
	var peek struct {
		MediaType types.MediaType `json:"mediaType"`
		Manifests json.RawMessage `json:"manifests"`
	}
	if json.Unmarshal(raw, &peek) == nil {
		switch {
		case peek.MediaType != "":
			return peek.MediaType
		case knownManifest[declared]:
			return declared
		case peek.Manifests != nil:
			return types.OCIImageIndex
		}
		return types.OCIManifestSchema1
	}
	return declared
}

var knownManifest = map[types.MediaType]bool{
	types.OCIImageIndex:               true,
	types.OCIManifestSchema1:          true,
	types.DockerManifestList:          true,
	types.DockerManifestSchema2:       true,
	types.DockerManifestSchema1:       true,
	types.DockerManifestSchema1Signed: true,
}

func isIndex(mt types.MediaType) bool {
	return mt == types.OCIImageIndex || mt == types.DockerManifestList
}

func parseIndex(raw []byte) (*v1.IndexManifest, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing image index: %w", err)
	}
	return idx, nil
}

// parseImageManifest parses an image manifest of media type mt and checks
// that it describes a container image whose config Resolve can read.
func parseImageManifest(mt types.MediaType, raw []byte) (*v1.Manifest, error) {
	switch mt {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return nil, withKind(ErrUnsupported, fmt.Errorf(
			"manifest media type %s: Docker schema 1 is deprecated and has no layer diff IDs; push the image again with a current client", mt))
	default:
		return nil, withKind(ErrUnsupported, fmt.Errorf("manifest media type %q is not an image manifest or index", mt))
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing image manifest: %w", err)
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON:
	default:
		return nil, withKind(ErrUnsupported, fmt.Errorf(
			"config media type %q is not a container image config (is this an OCI artifact?)", m.Config.MediaType))
	}
	if m.Config.Digest == (v1.Hash{}) {
		return nil, fmt.Errorf("image manifest has no config digest")
	}
	if m.Config.Size < 0 || m.Config.Size > maxConfigSize {
		return nil, withKind(ErrUnsupported, fmt.Errorf(
			"image config %s is %d bytes; the limit is %d", m.Config.Digest, m.Config.Size, int64(maxConfigSize)))
	}
	return m, nil
}

func parseConfig(raw []byte) (*v1.ConfigFile, error) {
	cfg, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing image config: %w", err)
	}
	return cfg, nil
}

// layerList pairs the manifest's layer descriptors with the config's
// diff IDs, bottom layer first, and refuses layers it cannot unpack.
func layerList(m *v1.Manifest, cfg *v1.ConfigFile) ([]Layer, error) {
	if cfg.RootFS.Type != "layers" {
		return nil, withKind(ErrUnsupported, fmt.Errorf("image config rootfs.type is %q, want \"layers\"", cfg.RootFS.Type))
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image manifest lists %d layers but its config lists %d rootfs.diff_ids",
			len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	layers := make([]Layer, len(m.Layers))
	for i, d := range m.Layers {
		switch {
		case nonDistributable[d.MediaType]:
			return nil, withKind(ErrUnsupported, fmt.Errorf(
				"layer %d (%s) has non-distributable media type %s; only layers stored in the registry are supported", i, d.Digest, d.MediaType))
		case !layerTypes[d.MediaType]:
			return nil, withKind(ErrUnsupported, fmt.Errorf(
				"layer %d (%s) has media type %q; supported: OCI tar, tar+gzip, tar+zstd and Docker rootfs.diff.tar(.gzip)", i, d.Digest, d.MediaType))
		case d.Digest == v1.Hash{}:
			return nil, fmt.Errorf("layer %d has no digest", i)
		case cfg.RootFS.DiffIDs[i] == v1.Hash{}:
			return nil, fmt.Errorf("layer %d (%s) has an empty rootfs.diff_ids entry", i, d.Digest)
		case d.Size < 0:
			return nil, fmt.Errorf("layer %d (%s) has negative size %d", i, d.Digest, d.Size)
		}
		layers[i] = Layer{Digest: d.Digest, DiffID: cfg.RootFS.DiffIDs[i], MediaType: d.MediaType, Size: d.Size}
	}
	return layers, nil
}
