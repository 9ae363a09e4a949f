package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	csicontroller "github.com/layerset/layerset-csi/pkg/csi/controller"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/layerset/layerset-csi/internal/version"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/controller"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/server"
	"github.com/layerset/layerset-csi/pkg/health"
	"github.com/layerset/layerset-csi/pkg/provisioner"
	"github.com/layerset/layerset-csi/pkg/source"
)

// controllerFlags are the flags of `layerset-csi controller`.
type controllerFlags struct {
	endpoint       string
	driverName     string
	stateDir       string
	layerSets      string
	insecure       []string
	metricsAddress string
	healthAddress  string
	// Cluster mode.
	kubeconfig  string
	leaderElect bool
	leases      leaseFlags
	provisioner bool
	resizer     resizerMode
}

// resizerMode is who expands the volumes of claims that ask for more
// storage: the controller itself, or (none) the csi-resizer sidecar.
type resizerMode string

const (
	resizerBuiltin resizerMode = "builtin"
	resizerNone    resizerMode = "none"
)

func (m *resizerMode) String() string { return string(*m) }

// Type names the choices in --help.
func (m *resizerMode) Type() string { return "builtin|none" }

// Set refuses anything but the choices, so a misspelt value fails at
// start rather than leaving claims unresized.
func (m *resizerMode) Set(s string) error {
	switch v := resizerMode(s); v {
	case resizerBuiltin, resizerNone:
		*m = v
		return nil
	}
	return fmt.Errorf("%q is not builtin or none", s)
}

// leaseFlags are the leader election durations, named as
// kube-controller-manager names them.
type leaseFlags struct{ duration, renewDeadline, retryPeriod time.Duration }

func newControllerCommand() *cobra.Command {
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "controller --endpoint unix:///PATH.sock [flags]",
		Short: "Serve the CSI controller service: create and delete LayerSet volumes",
		Long: "Serve the CSI Identity and Controller services on --endpoint, for external-provisioner.\n" +
			"A StorageClass names the LayerSet in its parameters (layerSet; upperSizeHint is deprecated).\n" +
			"Writable volumes keep their writes on one node, the one the provisioner's topology selects\n" +
			"(use volumeBindingMode: WaitForFirstConsumer and the provisioner's Topology feature).\n" +
			"Created volumes are recorded under --state-dir, so a restarted controller knows them.\n" +
			"Without --layersets it runs in cluster mode: it also resolves LayerSet objects (tags pinned to\n" +
			"digests, nested LayerSets, pull secrets) into their status, aggregates node cache readiness and,\n" +
			"with --provisioner, provisions PersistentVolumes itself instead of external-provisioner, and with\n" +
			"--resizer builtin, expands the volumes of claims that ask for more storage instead of external-resizer.\n" +
			"A claim's storage request is its volume's size limit, at most its LayerSet's maxSize.\n" +
			"CreateVolume refuses LayerSets that do not resolve.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runController(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint: unix:///PATH or a bare PATH")
	fs.StringVar(&f.driverName, "driver-name", names.DriverName, "CSI driver name")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/layerset/csi", "where the records of created volumes live, in its subfolder controller; may be the node's")
	fs.StringVar(&f.layerSets, "layersets", "", "standalone mode: folder of LayerSet YAML files instead of the Kubernetes API")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host[:port] that may be reached over plain HTTP when resolving --layersets (repeatable)")
	fs.StringVar(&f.metricsAddress, "metrics-address", "", "host:port serving /metrics, e.g. :9808 (default: none)")
	fs.StringVar(&f.healthAddress, "health-address", "", "host:port serving /healthz, e.g. :9809 (default: none)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "cluster mode: kubeconfig file (default: the pod's service account)")
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "cluster mode: elect one active LayerSet controller among replicas")
	fs.DurationVar(&f.leases.duration, "leader-elect-lease-duration", 15*time.Second, "cluster mode: how long a lease lasts without renewal")
	fs.DurationVar(&f.leases.renewDeadline, "leader-elect-renew-deadline", 10*time.Second, "cluster mode: how long the leader tries to renew before it gives up and exits")
	fs.DurationVar(&f.leases.retryPeriod, "leader-elect-retry-period", 2*time.Second, "cluster mode: how often a renewal or a campaign is tried")
	fs.BoolVar(&f.provisioner, "provisioner", false, "cluster mode: provision PersistentVolumes without external-provisioner")
	f.resizer = resizerNone
	fs.Var(&f.resizer, "resizer", "who expands the volumes of claims that ask for more storage: builtin, this controller (cluster mode), or none, the csi-resizer sidecar")
	return cmd
}

func runController(ctx context.Context, f controllerFlags) error {
	socket, err := server.ParseEndpoint(f.endpoint)
	if err != nil {
		return fmt.Errorf("--endpoint: %w", err)
	}
	src := source.Options{Insecure: f.insecure}
	var mgr ctrl.Manager
	cat, closeCatalog, err := openCatalog(ctx, f.layerSets, src, func() (catalog.Catalog, error) {
		cfg, err := restConfig(f.kubeconfig)
		if err != nil {
			return nil, err
		}
		cat, err := catalog.StartCluster(ctx, cfg, src)
		if err != nil {
			return nil, err
		}
		mgr, err = controller.NewManager(cfg, controller.ManagerOptions{
			LeaderElection: f.leaderElect, MetricsAddr: f.metricsAddress, HealthAddr: f.healthAddress,
			LeaseDuration: f.leases.duration, RenewDeadline: f.leases.renewDeadline, RetryPeriod: f.leases.retryPeriod,
		})
		if err != nil {
			return nil, err
		}
		return cat, controller.SetupWithManager(ctx, mgr, controller.Options{Source: src})
	})
	if err != nil {
		return err
	}
	defer closeCatalog()
	cs, err := csicontroller.New(ctx, csicontroller.Config{DriverName: f.driverName, StateDir: f.stateDir, Catalog: cat})
	if err != nil {
		return err
	}
	if f.provisioner {
		if mgr == nil {
			return fmt.Errorf("--provisioner needs cluster mode: it creates PersistentVolumes, and --layersets runs without Kubernetes")
		}
		if err := provisioner.Setup(mgr, provisioner.Options{DriverName: f.driverName, Controller: cs}); err != nil {
			return err
		}
	}
	if f.resizer == resizerBuiltin {
		if mgr == nil {
			return fmt.Errorf("--resizer builtin needs cluster mode: it resizes PersistentVolumeClaims, and --layersets runs without Kubernetes")
		}
		if err := provisioner.SetupResizer(mgr, provisioner.ResizerOptions{DriverName: f.driverName, Controller: cs}); err != nil {
			return err
		}
	}

	// In cluster mode the manager serves metrics and health, so the CSI
	// call metrics join its registry.
	var reg prometheus.Registerer = ctrlmetrics.Registry
	var own *prometheus.Registry
	if mgr == nil {
		own = newRegistry()
		reg = own
	}
	lis, err := server.Listen(f.endpoint)
	if err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Serving CSI controller", "endpoint", socket, "stateDir", f.stateDir,
		"layerSets", f.layerSets, "clusterMode", mgr != nil, "provisioner", f.provisioner, "resizer", f.resizer, "version", version.Get())

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return server.Serve(ctx, lis, server.Options{DriverName: f.driverName, Version: version.Get(), Metrics: reg}, cs)
	})
	// Probing over the socket checks the gRPC server as well as the
	// controller's state directory, which Identity.Probe asks about.
	probe := health.GRPCProbe(socket)
	switch {
	case mgr != nil:
		if f.healthAddress != "" {
			if err := mgr.AddHealthzCheck("csi", func(r *http.Request) error { return probe(r.Context()) }); err != nil {
				return err
			}
		}
		g.Go(func() error { return mgr.Start(ctx) })
	default:
		serveEndpoints(ctx, g, f.metricsAddress, f.healthAddress, own, probe)
	}
	return g.Wait()
}
