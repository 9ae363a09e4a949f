package node

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Server is the CSI Node service.
type Server struct {
	csi.UnimplementedNodeServer

	cfg      Config
	state    records
	inflight *rpc.Inflight
	assemble *assemble.Assembler
}

var _ csi.NodeServer = (*Server)(nil)

// New returns the node service. Before it returns, it brings the
// volumes recorded in cfg.StateDir into a consistent state (see recover),
// so that it answers for every mount a previous run of the plugin made.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("node service: %w", err)
	}
	state, err := openRecords(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("node service: %w", err)
	}
	n := &Server{
		cfg:      cfg,
		state:    state,
		inflight: rpc.NewInflight(),
		assemble: assemble.New(assemble.Options{Store: cfg.Store, Catalog: cfg.Catalog, Keys: cfg.Keys, NodeName: cfg.NodeID}),
	}
	logger(ctx).V(2).Info("Node service starting", "driver", cfg.DriverName, "node", cfg.NodeID, "endpoint", cfg.Endpoint, "state", cfg.StateDir)
	if err := n.recover(ctx); err != nil {
		return nil, fmt.Errorf("recover volumes recorded in %s: %w", cfg.StateDir, err)
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(newVolumeCollector(n.state)); err != nil {
			return nil, fmt.Errorf("register node metrics: %w", err)
		}
	}
	return n, nil
}

// Check reports whether the node can serve volumes: its state directory
// and layer store are reachable. Health checks and Probe call it.
func (n *Server) Check(ctx context.Context) error {
	for _, dir := range []string{n.cfg.StateDir, n.cfg.Store.Dir()} {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return fmt.Errorf("node: %s: %w", dir, err)
		}
	}
	return nil
}

// NodeGetInfo names the node and its topology segment.
func (n *Server) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             n.cfg.NodeID,
		AccessibleTopology: &csi.Topology{Segments: map[string]string{names.TopologyKey: n.cfg.NodeID}},
	}, nil
}

// NodeGetCapabilities lists what the node service does.
func (n *Server) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		// What CSI 1.13 offers in place of the VolumeCondition of
		// NodeGetVolumeStats, which it removed.
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH,
		// A staged volume is bind-mounted to any number of targets.
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{
			Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

// lock takes the volume's in-flight slot for one call.
func (n *Server) lock(volumeID string) (func(), error) { return n.inflight.Acquire(volumeID) }

// logger returns the call's logger; the server's interceptor puts the
// method and volume id in it.
func logger(ctx context.Context) klog.Logger { return klog.FromContext(ctx) }
