package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
	"github.com/layerset/layerset-csi/pkg/source"
)

// storeFlags are the flags every command that opens the store shares.
type storeFlags struct {
	root      string
	insecure  []string
	mountMode string
	parallel  int
	reserve   string
	quota     string
	projects  string
	mkfs      string
	fetch     fetchFlags
	// maxLayerBytes bounds one layer's import; the node sets it to its
	// cache budget (--cache-max-bytes), which no larger layer fits.
	maxLayerBytes int64
}

func (f *storeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.root, "root", "/var/lib/layerset", "state directory; the layer store lives in ROOT/overlay2")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host[:port] that may be reached over plain HTTP (repeatable)")
	fs.StringVar(&f.mountMode, "mount-mode", "auto", "how to mount overlayfs: auto, fsconfig (lowerdir+, Linux 6.8+) or legacy (mount(2))")
	fs.IntVar(&f.parallel, "parallel", 4, "layers of one chain downloaded and extracted at once")
	fs.StringVar(&f.reserve, "free-space-reserve", "", "space layer imports leave free on the filesystem of --root, e.g. 10Gi; "+
		"a layer that would leave less is refused (default: 5% of the filesystem, at most 1Gi; 0 means none)")
	fs.StringVar(&f.quota, "quota", string(quota.ModeAuto), "how volume sizes are enforced: auto (project quotas where the filesystem of --root has them, "+
		"else a filesystem image per volume), project (refuse sized volumes without project quotas), fallback (always images), off (ignore sizes)")
	fs.StringVar(&f.projects, "project-ids", quota.DefaultIDRange.String(), "project quota ids volumes may get, FIRST-LAST; never shared with an id in use")
	fs.StringVar(&f.mkfs, "mkfs", "mkfs.ext4", "mkfs.ext4 that formats volume images (--quota fallback or auto without project quotas)")
	f.fetch.register(fs)
}

func (f *storeFlags) sourceOptions() source.Options {
	opts := source.Options{Insecure: f.insecure}
	f.fetch.apply(&opts)
	return opts
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
	reserve, err := f.freeSpaceReserve()
	if err != nil {
		return nil, err
	}
	q, err := f.quotaOptions()
	if err != nil {
		return nil, err
	}
	if err := f.sourceOptions().Validate(); err != nil {
		return nil, fmt.Errorf("--fetch-* flags: %w", err)
	}
	return layers.Open(ctx, layers.Options{
		Root: root, Parallel: f.parallel, MountMode: mode, MaxLayerBytes: f.maxLayerBytes, FreeSpaceReserve: reserve, Quota: q,
	})
}

func (f *storeFlags) quotaOptions() (quota.Options, error) {
	mode, err := quota.ParseMode(f.quota)
	if err != nil {
		return quota.Options{}, fmt.Errorf("--quota: %w", err)
	}
	ids, err := quota.ParseIDRange(f.projects)
	if err != nil {
		return quota.Options{}, fmt.Errorf("--project-ids: %w", err)
	}
	return quota.Options{Mode: mode, ProjectIDs: ids, Image: quota.ImageOptions{Mkfs: f.mkfs}}, nil
}

// freeSpaceReserve is --free-space-reserve as layers.Options takes it: zero
// for the default, negative for none.
func (f *storeFlags) freeSpaceReserve() (int64, error) {
	if f.reserve == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(f.reserve)
	if err != nil || q.Sign() < 0 {
		return 0, fmt.Errorf("--free-space-reserve %q: want bytes or a quantity such as 10Gi, 0 for none", f.reserve)
	}
	if q.IsZero() {
		return -1, nil
	}
	return q.Value(), nil
}
