package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/version"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/driver"
	"github.com/layerset/layerset-csi/pkg/health"
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
	// Kubernetes parts, which come with the CRD support.
	kubeconfig  string
	leaderElect bool
	provisioner bool
}

// withCRDSupport marks the help of flags that are not served yet.
const withCRDSupport = " (comes with the LayerSet CRD support; refused until then)"

func newControllerCommand() *cobra.Command {
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "controller --endpoint unix:///PATH.sock [flags]",
		Short: "Serve the CSI controller service: create and delete LayerSet volumes",
		Long: "Serve the CSI Identity and Controller services on --endpoint, for external-provisioner.\n" +
			"A StorageClass names the LayerSet in its parameters (layerSet, and optionally upperSizeHint).\n" +
			"Writable volumes keep their writes on one node, the one the provisioner's topology selects\n" +
			"(use volumeBindingMode: WaitForFirstConsumer and the provisioner's Topology feature).\n" +
			"Created volumes are recorded under --state-dir, so a restarted controller knows them.\n" +
			"With --layersets, a volume is created only for a LayerSet that resolves.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runController(cmd.Context(), f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint: unix:///PATH or a bare PATH")
	fs.StringVar(&f.driverName, "driver-name", driver.DefaultDriverName, "CSI driver name")
	fs.StringVar(&f.stateDir, "state-dir", "/var/lib/layerset/csi", "where the records of created volumes live, in its subfolder controller; may be the node's")
	fs.StringVar(&f.layerSets, "layersets", "", "folder of LayerSet YAML files; when set, CreateVolume refuses LayerSets that do not resolve")
	fs.StringSliceVar(&f.insecure, "insecure-registry", nil, "registry host[:port] that may be reached over plain HTTP when resolving --layersets (repeatable)")
	fs.StringVar(&f.metricsAddress, "metrics-address", "", "host:port serving /metrics, e.g. :9808 (default: none)")
	fs.StringVar(&f.healthAddress, "health-address", "", "host:port serving /healthz, e.g. :9809 (default: none)")
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig for reading LayerSets from the cluster"+withCRDSupport)
	fs.BoolVar(&f.leaderElect, "leader-elect", false, "elect one active controller among replicas"+withCRDSupport)
	fs.BoolVar(&f.provisioner, "provisioner", false, "provision PersistentVolumes without external-provisioner"+withCRDSupport)
	return cmd
}

func runController(ctx context.Context, f controllerFlags) error {
	for _, later := range []struct {
		flag string
		set  bool
	}{{"--kubeconfig", f.kubeconfig != ""}, {"--leader-elect", f.leaderElect}, {"--provisioner", f.provisioner}} {
		if later.set {
			// TODO(lead): wire these up with the CRD support.
			return fmt.Errorf("%s comes with the LayerSet CRD support and is not available yet; "+
				"run external-provisioner with --leader-election next to a single controller instead", later.flag)
		}
	}
	socket, err := driver.ParseEndpoint(f.endpoint)
	if err != nil {
		return fmt.Errorf("--endpoint: %w", err)
	}
	var cat catalog.Catalog
	if f.layerSets != "" {
		dir, err := catalog.NewDir(ctx, f.layerSets, source.Options{Insecure: f.insecure})
		if err != nil {
			return fmt.Errorf("--layersets: %w", err)
		}
		defer dir.Close()
		cat = dir
	}
	ctrl, err := driver.NewControllerServer(ctx, driver.ControllerConfig{DriverName: f.driverName, StateDir: f.stateDir, Catalog: cat})
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	lis, err := driver.Listen(f.endpoint)
	if err != nil {
		return err
	}
	klog.FromContext(ctx).Info("Serving CSI controller", "endpoint", socket, "stateDir", f.stateDir, "layerSets", f.layerSets, "version", version.Get())

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return driver.Serve(ctx, lis, driver.ServerOptions{DriverName: f.driverName, Version: version.Get(), Metrics: reg}, ctrl)
	})
	// Probing over the socket checks the gRPC server as well as the
	// controller's state directory, which Identity.Probe asks about.
	probe := health.GRPCProbe(socket)
	switch {
	case f.metricsAddress != "" && f.metricsAddress == f.healthAddress:
		g.Go(func() error { return health.Serve(ctx, f.metricsAddress, reg, probe) })
	default:
		if f.metricsAddress != "" {
			g.Go(func() error { return health.Serve(ctx, f.metricsAddress, reg) })
		}
		if f.healthAddress != "" {
			g.Go(func() error { return health.Serve(ctx, f.healthAddress, nil, probe) })
		}
	}
	return g.Wait()
}
