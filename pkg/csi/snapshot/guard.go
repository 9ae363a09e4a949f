package snapshot

import (
	"context"
	"errors"
	"sync"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/identity"
)

// volumeSlots keep a volume's commit apart from the node calls that mount,
// unmount or resize it, without queueing either: Store.Commit must not
// overlap the volume's Mount or Unmount. Node calls share a volume's slot
// (the node service orders them among themselves); a commit takes it
// alone. Whoever finds it taken gets Aborted, and kubelet or
// csi-snapshotter retries with backoff.
type volumeSlots struct {
	mu sync.Mutex
	// held is, by volume, the number of node calls holding the slot, or
	// -1 while a commit holds it.
	held map[string]int
}

func newVolumeSlots() *volumeSlots { return &volumeSlots{held: map[string]int{}} }

func (v *volumeSlots) shared(id string) (func(), error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.held[id] < 0 {
		return nil, status.Errorf(codes.Aborted, "a snapshot of volume %s is being made; retry when it is done", id)
	}
	v.held[id]++
	return func() {
		v.mu.Lock()
		if v.held[id]--; v.held[id] == 0 {
			delete(v.held, id)
		}
		v.mu.Unlock()
	}, nil
}

func (v *volumeSlots) exclusive(id string) (func(), error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.held[id] != 0 {
		return nil, status.Errorf(codes.Aborted, "volume %s is being mounted, unmounted or resized; retry when that is done", id)
	}
	v.held[id] = -1
	return func() {
		v.mu.Lock()
		delete(v.held, id)
		v.mu.Unlock()
	}, nil
}

// NodeService is the node service GuardNode wraps: *node.Server.
type NodeService interface {
	csi.NodeServer
	identity.Checker
}

// GuardNode returns node with its calls that mount, unmount or resize a
// volume (stage, unstage, publish, unpublish, expand) kept from
// overlapping a snapshot of that volume: such a call gets Aborted while
// the volume is committed, and a commit gets Aborted while such a call
// runs. Serve the result in place of node.
func (s *Server) GuardNode(node NodeService) NodeService {
	return &guardedNode{NodeService: node, slots: s.slots}
}

type guardedNode struct {
	NodeService
	slots *volumeSlots
}

func guarded[Req interface{ GetVolumeId() string }, Resp any](slots *volumeSlots, ctx context.Context, req Req,
	call func(context.Context, Req) (Resp, error)) (Resp, error) {
	release, err := slots.shared(req.GetVolumeId())
	if err != nil {
		var zero Resp
		return zero, err
	}
	defer release()
	return call(ctx, req)
}

func (g *guardedNode) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	return guarded(g.slots, ctx, req, g.NodeService.NodeStageVolume)
}

func (g *guardedNode) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	return guarded(g.slots, ctx, req, g.NodeService.NodeUnstageVolume)
}

func (g *guardedNode) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	return guarded(g.slots, ctx, req, g.NodeService.NodePublishVolume)
}

func (g *guardedNode) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	return guarded(g.slots, ctx, req, g.NodeService.NodeUnpublishVolume)
}

func (g *guardedNode) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	return guarded(g.slots, ctx, req, g.NodeService.NodeExpandVolume)
}

// WithController returns one Controller service of two: the snapshot RPCs
// served by s, every other by controller (the monolith plugin, `node
// --controller --snapshots`, whose one socket can register one Controller
// service). Its capabilities are both services'; Probe asks both.
func (s *Server) WithController(controller csi.ControllerServer) csi.ControllerServer {
	return &combined{ControllerServer: controller, snap: s}
}

type combined struct {
	csi.ControllerServer
	snap *Server
}

func (c *combined) ControllerGetCapabilities(ctx context.Context, req *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	resp, err := c.ControllerServer.ControllerGetCapabilities(ctx, req)
	if err != nil {
		return nil, err
	}
	have := map[csi.ControllerServiceCapability_RPC_Type]bool{}
	for _, cp := range resp.GetCapabilities() {
		have[cp.GetRpc().GetType()] = true
	}
	for _, cp := range controllerCapabilities() {
		if !have[cp.GetRpc().GetType()] {
			resp.Capabilities = append(resp.Capabilities, cp)
		}
	}
	return resp, nil
}

func (c *combined) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	return c.snap.CreateSnapshot(ctx, req)
}

func (c *combined) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	return c.snap.DeleteSnapshot(ctx, req)
}

func (c *combined) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	return c.snap.ListSnapshots(ctx, req)
}

// Check asks both services.
func (c *combined) Check(ctx context.Context) error {
	var errs []error
	if ch, ok := c.ControllerServer.(identity.Checker); ok {
		errs = append(errs, ch.Check(ctx))
	}
	return errors.Join(append(errs, c.snap.Check(ctx))...)
}

// PluginCapabilities are the snapshot service's.
func (c *combined) PluginCapabilities() []*csi.PluginCapability { return c.snap.PluginCapabilities() }
