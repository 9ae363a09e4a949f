package compose

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/source"
)

var (
	// ErrCycle means LayerSets include each other.
	ErrCycle = errors.New("LayerSets include each other")
	// ErrTooManyLayers means the chain exceeds the overlayfs limit.
	ErrTooManyLayers = errors.New("too many layers")
	// ErrInvalidSpec means a LayerSet cannot be used as written.
	ErrInvalidSpec = errors.New("invalid LayerSet")
	// ErrLayerSetNotFound means a LayerSet names another that does not exist.
	ErrLayerSetNotFound = errors.New("LayerSet not found")
)

// Lookup returns the LayerSet with this name, or an error wrapping
// ErrLayerSetNotFound.
type Lookup func(ctx context.Context, name string) (*v1alpha1.LayerSet, error)

// ImageResolver resolves an image reference to its layers.
type ImageResolver func(ctx context.Context, ref string) (*source.Image, error)

// Layer is one layer of a resolved chain.
type Layer struct {
	source.Layer
	// Entry is the index in the top LayerSet's spec.layers it came from.
	Entry int
}

// Resolve expands ls into its chain, bottom first: every layer of each
// image entry, and the whole chain of each nested LayerSet. The chain plus
// the init layer must fit the overlayfs limit.
func Resolve(ctx context.Context, ls *v1alpha1.LayerSet, lookup Lookup, images ImageResolver) ([]Layer, error) {
	r := resolver{lookup: lookup, images: images, cache: map[string]*source.Image{}}
	chain, err := r.expand(ctx, ls, nil)
	if err != nil {
		return nil, err
	}
	if n := len(chain) + 1; n > v1alpha1.MaxLayers {
		return nil, fmt.Errorf("%w: LayerSet %q resolves to %d layers plus the init layer, %d in all; the limit is %d",
			ErrTooManyLayers, ls.Name, len(chain), n, v1alpha1.MaxLayers)
	}
	return chain, nil
}

type resolver struct {
	lookup Lookup
	images ImageResolver
	cache  map[string]*source.Image // one resolution per reference per call
}

// expand resolves ls; path holds the names of the LayerSets that include it.
func (r *resolver) expand(ctx context.Context, ls *v1alpha1.LayerSet, path []string) ([]Layer, error) {
	for _, p := range path {
		if p == ls.Name {
			return nil, fmt.Errorf("%w: %s", ErrCycle, strings.Join(append(path, ls.Name), " -> "))
		}
	}
	path = append(path, ls.Name)
	var chain []Layer
	for i, entry := range ls.Spec.Layers {
		var layers []source.Layer
		switch {
		case entry.Image != "" && entry.LayerSet == "":
			img, err := r.image(ctx, entry.Image)
			if err != nil {
				return nil, fmt.Errorf("LayerSet %q layers[%d]: %w", ls.Name, i, err)
			}
			layers = img.Layers
		case entry.LayerSet != "" && entry.Image == "":
			nested, err := r.lookup(ctx, entry.LayerSet)
			if err != nil {
				return nil, fmt.Errorf("LayerSet %q layers[%d]: %w", ls.Name, i, err)
			}
			sub, err := r.expand(ctx, nested, path)
			if err != nil {
				return nil, err
			}
			for _, l := range sub {
				layers = append(layers, l.Layer)
			}
		default:
			return nil, fmt.Errorf("%w: LayerSet %q layers[%d] must set exactly one of image or layerSet", ErrInvalidSpec, ls.Name, i)
		}
		for _, l := range layers {
			chain = append(chain, Layer{Layer: l, Entry: i})
		}
		// Stop early on runaway nesting rather than resolving everything.
		if len(chain) >= v1alpha1.MaxLayers {
			return nil, fmt.Errorf("%w: LayerSet %q reaches %d layers by layers[%d]; the limit is %d including the init layer",
				ErrTooManyLayers, ls.Name, len(chain), i, v1alpha1.MaxLayers)
		}
	}
	return chain, nil
}

func (r *resolver) image(ctx context.Context, ref string) (*source.Image, error) {
	if img, ok := r.cache[ref]; ok {
		return img, nil
	}
	img, err := r.images(ctx, ref)
	if err != nil {
		return nil, err
	}
	r.cache[ref] = img
	return img, nil
}

// Sources returns the distinct layers of a chain, for importing.
func Sources(chain []Layer) []source.Layer {
	out := make([]source.Layer, 0, len(chain))
	// By the digest itself: its String is a Sprintf, two per layer.
	seen := make(map[v1.Hash]bool, len(chain))
	for _, l := range chain {
		if !seen[l.DiffID] {
			seen[l.DiffID] = true
			out = append(out, l.Layer)
		}
	}
	return out
}
