package catalog

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// File is the catalog of one LayerSet file, as the mount command takes:
// the LayerSet it holds, whose nested LayerSets are looked up among the
// files in its folder. It is read once.
type File struct {
	path   string
	ls     *v1alpha1.LayerSet
	images *imageCache
}

var _ Catalog = (*File)(nil)

// NewFile reads the LayerSet in path, resolving its images with opts.
func NewFile(path string, opts source.Options) (*File, error) {
	ls, err := compose.LoadFile(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, ls: ls, images: newImageCache(opts)}, nil
}

// Name is the name of the file's LayerSet.
func (f *File) Name() string { return f.ls.Name }

// Resolve returns the file's LayerSet, which must be called name, and its
// chain, bottom first.
func (f *File) Resolve(ctx context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error) {
	if name != f.ls.Name {
		return nil, nil, fmt.Errorf("%w: %s holds LayerSet %q, not %q", compose.ErrLayerSetNotFound, f.path, f.ls.Name, name)
	}
	chain, err := compose.Resolve(ctx, f.ls, compose.DirLookup(filepath.Dir(f.path)), f.images.Resolve)
	if err != nil {
		return nil, nil, classify(err)
	}
	return f.ls.DeepCopy(), chain, nil
}
