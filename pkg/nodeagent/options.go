package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// Defaults of Options.
const (
	DefaultResyncInterval = 30 * time.Second
	DefaultSweepInterval  = 5 * time.Minute
	DefaultMinLayerAge    = 10 * time.Minute
	// DefaultProgressInterval bounds how often a prefetch's progress is
	// written to the NodeCache: often enough to watch, rare enough that a
	// cluster of pulling nodes does not load the API server.
	DefaultProgressInterval = 10 * time.Second
)

// Sweeper removes the kept uppers of persistent volumes that no longer
// exist; *node.Server is one.
type Sweeper interface {
	SweepUppers(ctx context.Context, exists func(ctx context.Context, volumeID string) (bool, error)) ([]string, error)
}

// Options configure the node agent.
type Options struct {
	// NodeName is the Node object this agent reports for.
	NodeName string
	// Store is the node's layer store.
	Store *layers.Store
	// Catalog resolves a LayerSet to the layers to pull; in a cluster, a
	// catalog.Cluster.
	Catalog catalog.Catalog
	// CacheMaxBytes is the size garbage collection keeps the store under;
	// 0 means no limit and no collection.
	CacheMaxBytes int64
	// MinLayerAge spares from collection the layers imported or released
	// less than this long ago. A volume being staged imports its layers
	// before it mounts them, and until then they look unused; a kubelet
	// retry after a slow pull can take minutes to come. Default
	// DefaultMinLayerAge.
	MinLayerAge time.Duration
	// Sweeper removes uppers of deleted PersistentVolumes; nil turns the
	// sweep off.
	Sweeper Sweeper
	// DriverName is the CSI driver whose PersistentVolumes the sweep
	// looks for; default names.DriverName.
	DriverName string
	// ResyncInterval is how often the cache is reported, collected and
	// prefetched with no event asking; default DefaultResyncInterval.
	ResyncInterval time.Duration
	// SweepInterval is how often uppers are swept with no PersistentVolume
	// deleted meanwhile; default DefaultSweepInterval.
	SweepInterval time.Duration
	// ProgressInterval is how often the NodeCache is updated with the
	// progress of a running prefetch; default DefaultProgressInterval.
	ProgressInterval time.Duration
}

func (o *Options) setDefaults() error {
	var errs []error
	if o.NodeName == "" {
		errs = append(errs, errors.New("node name is empty"))
	}
	if o.Store == nil {
		errs = append(errs, errors.New("no layer store"))
	}
	if o.Catalog == nil {
		errs = append(errs, errors.New("no LayerSet catalog"))
	}
	if o.CacheMaxBytes < 0 {
		errs = append(errs, fmt.Errorf("cache budget %d bytes is negative; use 0 for no limit", o.CacheMaxBytes))
	}
	if o.ResyncInterval < 0 || o.SweepInterval < 0 || o.MinLayerAge < 0 || o.ProgressInterval < 0 {
		errs = append(errs, fmt.Errorf("durations must not be negative (resync %s, sweep %s, minimum layer age %s, progress %s)",
			o.ResyncInterval, o.SweepInterval, o.MinLayerAge, o.ProgressInterval))
	}
	if o.DriverName == "" {
		o.DriverName = names.DriverName
	}
	if o.ResyncInterval == 0 {
		o.ResyncInterval = DefaultResyncInterval
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = DefaultSweepInterval
	}
	if o.MinLayerAge == 0 {
		o.MinLayerAge = DefaultMinLayerAge
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if len(errs) > 0 {
		return fmt.Errorf("node agent: %w", errors.Join(errs...))
	}
	return nil
}
