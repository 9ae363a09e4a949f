// Package assemble makes volumes on this node from LayerSets: it resolves
// a LayerSet's chain, pulls the layers the store lacks, renders the init
// files and mounts the composed volume. The CSI node service, the node
// agent's prefetch and the mount command all go through it, so a volume
// is made the same way whoever asks for it.
package assemble

import (
	"context"
	"errors"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

// Options configure an Assembler.
type Options struct {
	Store   *layers.Store
	Catalog catalog.Catalog
	// Keys reads ConfigMap and Secret keys for init files; nil where no
	// cluster is at hand, and such files then fail to render.
	Keys compose.KeyReader
	// NodeName is what init templates see as .NodeName.
	NodeName string
}

// Assembler makes volumes from the LayerSets of one catalog in one store.
type Assembler struct {
	opts Options
	// templates keeps the LayerSets' init templates parsed: every volume
	// of a LayerSet renders the same ones.
	templates compose.Templates
}

// New returns an Assembler.
func New(opts Options) *Assembler { return &Assembler{opts: opts} }

// Request says what to compose for one volume and where to mount it.
type Request struct {
	VolumeID string
	LayerSet string
	// Pod is what init templates see of the pod; its NodeName and
	// VolumeID are filled in.
	Pod    compose.PodInfo
	Target string
	// ReadOnly volumes have no writable upper.
	ReadOnly bool
	// Ephemeral volumes cannot outlive a reboot, so their metadata is
	// written atomically but not synced to disk.
	Ephemeral bool
	// MountOptions are the volume's mount options (the CSI capability's
	// mount_flags: a PV's or StorageClass's mountOptions), applied over
	// overlay.DefaultFlags.
	MountOptions []string
	// Size limits the writable upper, in bytes; zero asks for the
	// LayerSet's spec.defaultSize, if any. Above its spec.maxSize the
	// volume is refused (ErrSize).
	Size int64
}

// Mount resolves the LayerSet, pulls what the store lacks, renders the
// init files and mounts the volume at req.Target.
//
// The pull runs detached from ctx inside the store: when a caller's
// deadline ends this call, the download goes on, and a retry joins it.
func (a *Assembler) Mount(ctx context.Context, req Request) (*layers.Volume, error) {
	ls, _, diffIDs, err := a.pull(ctx, req.LayerSet)
	if err != nil {
		return nil, err
	}
	flags, err := mountFlags(ls, req.MountOptions)
	if err != nil {
		return nil, err
	}
	size, err := volumeSize(ls, req.Size)
	if err != nil {
		return nil, err
	}
	pod := req.Pod
	pod.NodeName, pod.VolumeID = a.opts.NodeName, req.VolumeID
	rendered, err := a.templates.RenderInit(ctx, ls.Spec.Init, pod, a.opts.Keys)
	if err != nil {
		return nil, fmt.Errorf("render the init files of LayerSet %q: %w", req.LayerSet, err)
	}
	init := make([]layers.InitFile, len(rendered))
	for i, f := range rendered {
		init[i] = layers.InitFile{Path: f.Path, Mode: f.Mode, Data: f.Data}
	}
	vol, err := a.opts.Store.Mount(ctx, layers.VolumeSpec{
		ID:        req.VolumeID,
		Layers:    diffIDs,
		Init:      init,
		ReadOnly:  req.ReadOnly,
		Target:    req.Target,
		Ephemeral: req.Ephemeral,
		Flags:     flags,
		Size:      size,
	})
	if err != nil {
		return nil, fmt.Errorf("compose LayerSet %q: %w", req.LayerSet, err)
	}
	return vol, nil
}

// Pull resolves the LayerSet called name and imports the layers of its
// chain the store lacks.
func (a *Assembler) Pull(ctx context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error) {
	ls, chain, _, err := a.pull(ctx, name)
	return ls, chain, err
}

// pull is Pull, and returns the chain's uncompressed digests too.
func (a *Assembler) pull(ctx context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, []v1.Hash, error) {
	ls, chain, err := a.opts.Catalog.Resolve(ctx, name)
	if err != nil {
		return nil, nil, nil, err
	}
	diffIDs := make([]v1.Hash, len(chain))
	for i, l := range chain {
		diffIDs[i] = l.DiffID
	}
	if a.opts.Store.HasLayers(diffIDs) {
		return ls, chain, diffIDs, nil // warm: nothing to import, nor to follow
	}
	if err := a.opts.Store.Import(ctx, compose.Sources(chain)); err != nil {
		return nil, nil, nil, fmt.Errorf("pull the layers of LayerSet %q: %w", name, err)
	}
	return ls, chain, diffIDs, nil
}

// mountFlags are a volume's mount attributes: nosuid and nodev, unless the
// LayerSet allows setuid binaries, then the volume's own options.
func mountFlags(ls *v1alpha1.LayerSet, options []string) (overlay.Flags, error) {
	base := overlay.DefaultFlags
	if ls.Spec.AllowSetuid {
		base.NoSuid = false
	}
	flags, err := overlay.ParseFlags(base, options)
	if err != nil {
		return flags, fmt.Errorf("%w: mount options of LayerSet %q volume: %w", ErrMountOptions, ls.Name, err)
	}
	return flags, nil
}

// volumeSize is the limit of a volume asking for size bytes: the
// LayerSet's default when it asks for none, refused above its maximum.
func volumeSize(ls *v1alpha1.LayerSet, size int64) (int64, error) {
	if size == 0 && ls.Spec.DefaultSize != nil {
		size = ls.Spec.DefaultSize.Value()
	}
	if max := ls.Spec.MaxSize; max != nil && size > max.Value() {
		return 0, fmt.Errorf("%w: the volume asks for %s, LayerSet %q allows at most %s (spec.maxSize)",
			ErrSize, resource.NewQuantity(size, resource.BinarySI), ls.Name, max)
	}
	return size, nil
}

var (
	// ErrMountOptions marks mount options the volume cannot be mounted with.
	ErrMountOptions = errors.New("invalid mount options")
	// ErrSize marks a size the LayerSet does not allow.
	ErrSize = errors.New("size not allowed")
)
