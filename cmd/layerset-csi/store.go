package main

import (
	"context"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// storeFlags are the flags every command that opens the store shares.
type storeFlags struct {
	root      string
	insecure  []string
	mountMode string
	parallel  int
}

func (f *storeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.root, "root", "/var/lib/layerset", "state directory; the layer store lives in ROOT/overlay2")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host[:port] that may be reached over plain HTTP (repeatable)")
	fs.StringVar(&f.mountMode, "mount-mode", "auto", "how to mount overlayfs: auto, fsconfig (lowerdir+, Linux 6.8+) or legacy (mount(2))")
	fs.IntVar(&f.parallel, "parallel", 4, "layers of one chain downloaded and extracted at once")
}

func (f *storeFlags) sourceOptions() source.Options {
	return source.Options{Insecure: f.insecure}
}

func (f *storeFlags) imageResolver() compose.ImageResolver {
	opts := f.sourceOptions()
	return func(ctx context.Context, ref string) (*source.Image, error) {
		return source.Resolve(ctx, ref, opts)
	}
}

func (f *storeFlags) open(ctx context.Context) (*layers.Store, error) {
	mode, err := overlay.ParseMode(f.mountMode)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs(f.root)
	if err != nil {
		return nil, err
	}
	return layers.Open(ctx, layers.Options{Root: root, Parallel: f.parallel, MountMode: mode})
}
