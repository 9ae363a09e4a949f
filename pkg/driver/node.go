package driver

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// NodeServer is the CSI node service.
type NodeServer struct {
	csi.UnimplementedNodeServer

	cfg      Config
	state    stateDir
	inflight *inflight
}

var _ csi.NodeServer = (*NodeServer)(nil)

// NewNodeServer returns the node service. Before it returns, it brings the
// volumes recorded in cfg.StateDir into a consistent state (see recover),
// so that it answers for every mount a previous run of the plugin made.
func NewNodeServer(ctx context.Context, cfg Config) (*NodeServer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("node service: %w", err)
	}
	n := &NodeServer{cfg: cfg, state: stateDir{dir: cfg.StateDir}, inflight: newInflight()}
	if err := n.state.init(); err != nil {
		return nil, err
	}
	if err := n.state.removeTemp(); err != nil {
		return nil, err
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
func (n *NodeServer) Check(ctx context.Context) error {
	for _, dir := range []string{n.cfg.StateDir, n.cfg.Store.Dir()} {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return fmt.Errorf("node: %s: %w", dir, err)
		}
	}
	return nil
}

// NodeGetInfo names the node and its topology segment.
func (n *NodeServer) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             n.cfg.NodeID,
		AccessibleTopology: &csi.Topology{Segments: map[string]string{TopologyKey: n.cfg.NodeID}},
	}, nil
}

// NodeGetCapabilities lists what the node service does.
func (n *NodeServer) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, t := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
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

// NodeExpandVolume is not offered: a volume has no size to grow, its
// writes take what the node's disk has.
func (n *NodeServer) NodeExpandVolume(context.Context, *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	return nil, status.Error(codes.Unimplemented, "NodeExpandVolume: layerset volumes have no fixed size to expand")
}

// lock takes the volume's in-flight slot for one call.
func (n *NodeServer) lock(volumeID string) (func(), error) { return n.inflight.acquire(volumeID) }

// logger returns the call's logger; the server's interceptor puts the
// method and volume id in it.
func logger(ctx context.Context) klog.Logger { return klog.FromContext(ctx) }
