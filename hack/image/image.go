package main

import (
	"bytes"
	"fmt"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image history's notes of how each layer was made.
const (
	createdBy      = "hack/image: layerset-csi binary and CA certificates"
	toolsCreatedBy = "hack/image: tools of the node plugin, with their libraries and loader"
)

// Labels are the image's OCI annotations as config labels, which registries,
// `docker inspect` and `crictl inspecti` show. The Dockerfile sets the same.
func Labels(version, revision string, created time.Time) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "layerset-csi",
		"org.opencontainers.image.description": "CSI driver composing pod volumes from shared, cached read-only OCI image layers with overlayfs",
		"org.opencontainers.image.source":      "https://github.com/layerset/layerset-csi",
		"org.opencontainers.image.url":         "https://github.com/layerset/layerset-csi",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.revision":    revision,
		"org.opencontainers.image.created":     created.UTC().Format(time.RFC3339),
	}
}

// platformImage is the input of one platform's image.
type platformImage struct {
	Binary  Binary
	Exe     []byte // the layerset-csi binary
	Certs   []byte // PEM CA bundle
	Tools   []file // the tools layer; none: no such layer
	Labels  map[string]string
	Created time.Time
}

// buildImage assembles one platform's image: an OCI manifest with the tools
// layer, if there are tools, and a layer holding the binary and the CA
// bundle, run as its entrypoint. The tools come first: they change when
// Debian's packages do, not with every build, so nodes and registries keep
// that layer from one release to the next. The image sets no user: the node
// plugin mounts and runs as root, and the chart runs the controller as an
// unprivileged user.
func buildImage(in platformImage) (v1.Image, error) {
	type layerOf struct {
		files     []file
		createdBy string
	}
	layers := []layerOf{{in.Tools, toolsCreatedBy}, {[]file{
		{Path: Entrypoint, Mode: 0o755, Data: in.Exe},
		{Path: certPath, Mode: 0o644, Data: in.Certs},
	}, createdBy}}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range layers {
		if len(l.files) == 0 {
			continue
		}
		layer, err := tarLayer(l.files, in.Created)
		if err != nil {
			return nil, fmt.Errorf("%s layer: %w", in.Binary.Platform(), err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: in.Created}, CreatedBy: l.createdBy},
		})
		if err != nil {
			return nil, fmt.Errorf("%s image: %w", in.Binary.Platform(), err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s config: %w", in.Binary.Platform(), err)
	}
	cf = cf.DeepCopy()
	cf.OS = in.Binary.OS
	cf.Architecture = in.Binary.Arch
	cf.Variant = in.Binary.Variant
	cf.Created = v1.Time{Time: in.Created}
	cf.Config.Entrypoint = []string{Entrypoint}
	cf.Config.Env = []string{"PATH=" + searchPath}
	cf.Config.Labels = in.Labels
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("%s config: %w", in.Binary.Platform(), err)
	}
	return img, nil
}

// tarLayer makes an OCI layer of files, its tar stream held in memory.
func tarLayer(files []file, created time.Time) (v1.Layer, error) {
	tb, err := rootfsTar(files, created)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tb)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// buildIndex puts the platforms' images in one OCI image index, in the
// order given, each descriptor carrying its platform.
func buildIndex(bins []Binary, imgs []v1.Image) (v1.ImageIndex, error) {
	adds := make([]mutate.IndexAddendum, len(imgs))
	for i, img := range imgs {
		adds[i] = mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: bins[i].OS, Architecture: bins[i].Arch, Variant: bins[i].Variant},
			},
		}
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if _, err := idx.Digest(); err != nil {
		return nil, fmt.Errorf("image index: %w", err)
	}
	return idx, nil
}
