package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/health"
	"github.com/layerset/layerset-csi/pkg/source"
)

// What `node` and `controller` both wire around their CSI services.

// newRegistry is a metrics registry with the Go and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// openCatalog is the folder of LayerSet files named by --layersets
// (standalone mode), or else what cluster returns. close releases it.
func openCatalog(ctx context.Context, layerSets string, src source.Options, cluster func() (catalog.Catalog, error)) (cat catalog.Catalog, closeFn func(), err error) {
	if layerSets == "" {
		cat, err := cluster()
		return cat, func() {}, err
	}
	dir, err := catalog.NewDir(ctx, layerSets, src)
	if err != nil {
		return nil, nil, fmt.Errorf("--layersets: %w", err)
	}
	return dir, func() {
		if err := dir.Close(); err != nil {
			klog.FromContext(ctx).Error(err, "Closing the LayerSet folder")
		}
	}, nil
}

// serveEndpoints serves /metrics from reg at metricsAddr and /healthz,
// asking check, at healthAddr: one server when both addresses are the
// same, none for an empty address.
func serveEndpoints(ctx context.Context, g *errgroup.Group, metricsAddr, healthAddr string, reg *prometheus.Registry, check health.Check) {
	if metricsAddr != "" && metricsAddr == healthAddr {
		g.Go(func() error { return health.Serve(ctx, metricsAddr, reg, check) })
		return
	}
	if metricsAddr != "" {
		g.Go(func() error { return health.Serve(ctx, metricsAddr, reg) })
	}
	if healthAddr != "" {
		g.Go(func() error { return health.Serve(ctx, healthAddr, nil, check) })
	}
}
