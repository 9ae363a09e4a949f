package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	csicontroller "github.com/layerset/layerset-csi/pkg/csi/controller"
	csinode "github.com/layerset/layerset-csi/pkg/csi/node"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/layerset/layerset-csi/internal/version"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/server"
	"github.com/layerset/layerset-csi/pkg/csi/snapshot"
	"github.com/layerset/layerset-csi/pkg/nodeagent"
	"github.com/layerset/layerset-csi/pkg/registration"
)

// nodeFlags are the flags of `layerset-csi node`.
type nodeFlags struct {
	store           storeFlags
	endpoint        string
	nodeID          string
	driverName      string
	stateDir        string
	layerSets       string
	kubeconfig      string
	metricsAddress  string
	healthAddress   string
	registrationDir string
	kubeletEndpoint string
	controller      bool
	snapshots       bool
	cacheMaxBytes   string
}

func newNodeCommand() *cobra.Command {
	var f nodeFlags
	cmd := &cobra.Command{
		Use:   "node --endpoint unix:///PATH.sock --layersets DIR [flags]",
		Short: "Serve the CSI node service: compose pod volumes from LayerSets",
		Long: "Serve the CSI Identity and Node services on --endpoint. Volumes are composed from LayerSets\n" +
			"read from the YAML files in --layersets (standalone mode) or, without it, from the LayerSet\n" +
			"objects of the cluster (cluster mode, which also prefetches layers, reports this node's cache in\n" +
			"its NodeCache object, keeps the cache under --cache-max-bytes and removes the uppers of deleted\n" +
			"PersistentVolumes). Layers are cached in the store under --root. On start, the volumes recorded in the state directory are reconciled with the\n" +
			"mount table, so the plugin can be restarted, or killed, at any time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runNode(cmd.Context(), f) },
	}
	f.store.register(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVar(&f.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint: unix:///PATH or a bare PATH")
	fs.StringVar(&f.nodeID, "node-id", "", "node name, as kubelet knows it (default: the host name)")
	fs.StringVar(&f.driverName, "driver-name", names.DriverName, "CSI driver name")
	fs.StringVar(&f.stateDir, "state-dir", "", "where per-volume records live (default: ROOT/csi)")
	fs.StringVar(&f.layerSets, "layersets", "", "standalone mode: folder of LayerSet YAML files instead of the Kubernetes API")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "cluster mode: kubeconfig file (default: the pod's service account)")
	fs.StringVar(&f.cacheMaxBytes, "cache-max-bytes", "0", "cluster mode: keep the layer cache under this size (e.g. 50Gi), removing unused layers least recently used first, and refusing to import a larger layer; 0 means no limit")
	fs.StringVar(&f.metricsAddress, "metrics-address", "", "host:port serving /metrics, e.g. :9808 (default: none)")
	fs.StringVar(&f.healthAddress, "health-address", "", "host:port serving /healthz, e.g. :9809 (default: none)")
	fs.StringVar(&f.registrationDir, "registration-dir", "", "kubelet's plugin registration folder, e.g. /registration; when set, the plugin registers itself with kubelet")
	fs.StringVar(&f.kubeletEndpoint, "kubelet-registration-path", "", "the CSI socket's path as kubelet sees it (default: the --endpoint path)")
	fs.BoolVar(&f.controller, "controller", false, "also serve the CSI controller service on the same endpoint (a monolith plugin, as Nomad runs; "+
		"persistent uppers of volumes it deletes are swept on this node)")
	fs.BoolVar(&f.snapshots, "snapshots", false, "also serve CSI snapshots of this node's volumes on the same endpoint: a Controller service of "+
		"CreateSnapshot, DeleteSnapshot and ListSnapshots only, for a csi-snapshotter sidecar run with --node-deployment "+
		"(with --controller, one Controller service of both)")
	return cmd
}

// complete fills in the defaults that depend on the machine and checks
// what the flags say; it returns the socket path and the cache budget.
func (f *nodeFlags) complete() (socket string, budget int64, err error) {
	q, err := resource.ParseQuantity(f.cacheMaxBytes)
	if err != nil {
		return "", 0, fmt.Errorf("--cache-max-bytes %q: %w (use bytes or a quantity such as 50Gi)", f.cacheMaxBytes, err)
	}
	f.store.maxLayerBytes = q.Value() // a larger layer never fits the cache
	if f.nodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			return "", 0, fmt.Errorf("--node-id not given and the host name is unknown: %w", err)
		}
		f.nodeID = host
	}
	if socket, err = server.ParseEndpoint(f.endpoint); err != nil {
		return "", 0, fmt.Errorf("--endpoint: %w", err)
	}
	if f.store.root, err = filepath.Abs(f.store.root); err != nil {
		return "", 0, err
	}
	if f.stateDir == "" {
		f.stateDir = filepath.Join(f.store.root, "csi")
	}
	return socket, q.Value(), nil
}

func runNode(ctx context.Context, f nodeFlags) error {
	log := klog.FromContext(ctx)
	socket, budget, err := f.complete()
	if err != nil {
		return err
	}
	reg := newRegistry()

	store, err := f.store.open(ctx)
	if err != nil {
		return err
	}
	// Every import counts, the node service's and the prefetch's.
	if err := reg.Register(csinode.NewPullCollector(store)); err != nil {
		return fmt.Errorf("register pull metrics: %w", err)
	}
	var (
		keys   compose.KeyReader
		mgr    ctrl.Manager
		events recorder.EventRecorder
	)
	cat, closeCatalog, err := openCatalog(ctx, f.layerSets, f.store.sourceOptions(), func() (catalog.Catalog, error) {
		cfg, err := restConfig(f.kubeconfig)
		if err != nil {
			return nil, err
		}
		if mgr, err = nodeagent.NewManager(cfg, nodeagent.ManagerOptions{NodeName: f.nodeID}); err != nil {
			return nil, err
		}
		keys = catalog.KeyReader(mgr.GetAPIReader())
		events = mgr.GetEventRecorder("layerset-csi-node")
		return catalog.NewCluster(mgr.GetCache(), mgr.GetAPIReader(), f.store.sourceOptions()), nil
	})
	if err != nil {
		return err
	}
	defer closeCatalog()
	node, err := csinode.New(ctx, csinode.Config{
		DriverName: f.driverName,
		Version:    version.Get(),
		NodeID:     f.nodeID,
		Endpoint:   f.endpoint,
		StateDir:   f.stateDir,
		Store:      store,
		Catalog:    cat,
		Keys:       keys,
		Metrics:    reg,
		Events:     events,
	})
	if err != nil {
		return err
	}
	var (
		nodeService snapshot.NodeService = node
		controller  csi.ControllerServer
		sweep       func(context.Context, string) (bool, error)
		// lookup tells the snapshot service of volumes this node never
		// composed: the monolith's own controller knows them, in cluster
		// mode their PersistentVolumes do; standalone, they are unknown.
		lookup snapshot.Lookup
	)
	if f.controller {
		cs, err := csicontroller.New(ctx, csicontroller.Config{DriverName: f.driverName, StateDir: f.stateDir, Catalog: cat})
		if err != nil {
			return err
		}
		controller, sweep, lookup = cs, cs.VolumeExists, controllerLookup(cs)
	}
	if f.snapshots {
		if lookup == nil && mgr != nil {
			lookup = snapshot.PersistentVolumes(mgr.GetAPIReader(), f.driverName)
		}
		snaps, err := snapshot.New(ctx, snapshot.Config{
			NodeID: f.nodeID, StateDir: f.stateDir, Store: store, Catalog: cat, Source: f.store.sourceOptions(), Lookup: lookup,
		})
		if err != nil {
			return err
		}
		// A volume's commit and its mounts exclude each other; with the
		// controller, one Controller service serves both.
		nodeService = snaps.GuardNode(node)
		if controller != nil {
			controller = snaps.WithController(controller)
		} else {
			controller = snaps
		}
	}
	services := []any{nodeService}
	if controller != nil {
		services = append(services, controller)
	}
	lis, err := server.Listen(f.endpoint)
	if err != nil {
		return err
	}
	log.Info("Serving CSI node", "endpoint", socket, "nodeID", f.nodeID, "root", f.store.root, "layerSets", f.layerSets,
		"controller", f.controller, "snapshots", f.snapshots, "version", version.Get())

	g, ctx := errgroup.WithContext(ctx)
	if mgr != nil {
		err := nodeagent.Setup(mgr, nodeagent.Options{
			NodeName: f.nodeID, Store: store, Catalog: cat, CacheMaxBytes: budget, Sweeper: node, DriverName: f.driverName,
		})
		if err != nil {
			return err
		}
		// Serving does not wait for the API server: kubelet must be able to
		// unpublish and unstage even when the API is unreachable, and reads
		// of LayerSets wait for the cache themselves.
		g.Go(func() error { return mgr.Start(ctx) })
	}
	g.Go(func() error {
		return server.Serve(ctx, lis, server.Options{DriverName: f.driverName, Version: version.Get(), Metrics: reg}, services...)
	})
	if sweep != nil {
		g.Go(func() error { return sweepPeriodically(ctx, node, sweep) })
	}
	serveEndpoints(ctx, g, f.metricsAddress, f.healthAddress, reg, node.Check)
	if f.registrationDir != "" {
		kubeletPath := f.kubeletEndpoint
		if kubeletPath == "" {
			kubeletPath = socket
		}
		g.Go(func() error { return registration.Serve(ctx, f.registrationDir, f.driverName, kubeletPath, nil) })
	}
	return g.Wait()
}

// controllerLookup tells the snapshot service what the monolith's
// controller created.
func controllerLookup(cs *csicontroller.Server) snapshot.Lookup {
	return func(ctx context.Context, id string) (snapshot.VolumeInfo, error) {
		v, err := cs.Volume(ctx, id)
		if v == nil || err != nil {
			return snapshot.VolumeInfo{}, err
		}
		return snapshot.VolumeInfo{Exists: true, LayerSet: v.LayerSet, ReadOnly: !v.Writable}, nil
	}
}

// sweepInterval is how often a monolith plugin removes the uppers of
// volumes its controller service deleted.
const sweepInterval = 5 * time.Minute

func sweepPeriodically(ctx context.Context, node *csinode.Server, exists func(context.Context, string) (bool, error)) error {
	for {
		removed, err := node.SweepUppers(ctx, exists)
		if err != nil {
			klog.FromContext(ctx).Error(err, "Sweeping uppers of deleted volumes")
		} else if len(removed) > 0 {
			klog.FromContext(ctx).Info("Removed uppers of deleted volumes", "volumes", removed)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sweepInterval):
		}
	}
}
