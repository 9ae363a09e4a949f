// Package controller is the CSI Controller service of layerset-csi.
// Creating a volume only records it, so that a retry gets the same answer
// and DeleteVolume knows what it made; a node composes the volume when it
// is staged. The record holds the volume's size, the limit of its
// writable upper, which the node enforces and ControllerExpandVolume
// raises.
package controller

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/internal/record"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
)

// Config configures the controller service.
type Config struct {
	DriverName string // default names.DriverName
	// StateDir is where the records of created volumes live, in its
	// subdirectory "controller"; it may be shared with a node service.
	StateDir string
	// Catalog, when set, is asked whether a volume's LayerSet resolves
	// before the volume is created, and for the LayerSet's defaultSize
	// and maxSize when a volume is created or expanded.
	Catalog catalog.Catalog
}

func (c *Config) setDefaults() error {
	if c.DriverName == "" {
		c.DriverName = names.DriverName
	}
	if c.StateDir == "" || !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("state directory %q must be an absolute path", c.StateDir)
	}
	return nil
}

// Server is the CSI controller service. Creating a volume only
// records it: a node composes the volume when it is staged, and keeps
// its writes in an upper on its own disk.
type Server struct {
	csi.UnimplementedControllerServer

	cfg      Config
	volumes  *record.Store[createdVolume]
	inflight *rpc.Inflight
}

var _ csi.ControllerServer = (*Server)(nil)

// New returns the controller service, which knows every
// volume recorded in cfg.StateDir by an earlier run.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("controller service: %w", err)
	}
	volumes, err := openRecords(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("controller service: %w", err)
	}
	c := &Server{cfg: cfg, volumes: volumes, inflight: rpc.NewInflight()}
	klog.FromContext(ctx).V(2).Info("Controller service ready", "driver", cfg.DriverName, "records", c.volumes.Dir())
	return c, nil
}

// Check reports whether the controller can record volumes. Probe and
// health checks call it.
func (c *Server) Check(context.Context) error {
	if err := unix.Access(c.volumes.Dir(), unix.W_OK); err != nil {
		return fmt.Errorf("controller: volume records %s are not writable: %w", c.volumes.Dir(), err)
	}
	return nil
}

// VolumeExists reports whether the controller created volume id and has
// not deleted it. A node's SweepUppers can ask it in setups where the
// node reads the controller's StateDir.
func (c *Server) VolumeExists(_ context.Context, id string) (bool, error) {
	if !isControllerVolumeID(id) {
		return false, nil
	}
	v, err := c.volumes.Load(id)
	return v != nil, err
}

// CreatedVolume is what the controller recorded of a volume it created
// that another service on the same plugin may need.
type CreatedVolume struct {
	LayerSet string
	Writable bool // asked for with a writable access mode
}

// Volume returns what the controller recorded of volume id, nil when it
// did not create it or has deleted it: the monolith plugin's snapshot
// service asks it about volumes its node never composed.
func (c *Server) Volume(_ context.Context, id string) (*CreatedVolume, error) {
	if !isControllerVolumeID(id) {
		return nil, nil
	}
	v, err := c.volumes.Load(id)
	if v == nil || err != nil {
		return nil, err
	}
	return &CreatedVolume{LayerSet: v.Params.LayerSet, Writable: v.Writable}, nil
}

// ControllerGetCapabilities lists what the controller service does.
func (c *Server) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		// SINGLE_NODE_SINGLE_WRITER and SINGLE_NODE_MULTI_WRITER volumes
		// are accepted (Kubernetes' ReadWriteOncePod needs this).
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		// A volume's size is a number in its record; growing it is
		// recorded here and applied live by the node.
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume records a volume of the LayerSet the parameters name. A
// writable volume is pinned to the node its accessibility requirements
// select, since its upper lives there; a read-only one is composable on
// every node. Its size is the capacity range's (required_bytes, else
// limit_bytes), else the deprecated upperSizeHint parameter's, else the
// LayerSet's defaultSize, else none; at most the LayerSet's maxSize.
// Asked again with the same name, it returns the same volume if the
// request is compatible with it, AlreadyExists if not.
func (c *Server) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	want, source, err := c.newVolume(req)
	if err != nil {
		return nil, err
	}
	have, release, err := c.lockVolume(want.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	if have != nil {
		if err := compatible(have, want, req.GetAccessibilityRequirements()); err != nil {
			return nil, err
		}
		return &csi.CreateVolumeResponse{Volume: have.csiVolume()}, nil
	}
	if c.cfg.Catalog != nil {
		ls, _, err := c.cfg.Catalog.Resolve(ctx, want.Params.LayerSet)
		if err != nil {
			return nil, rpc.Status(ctx, fmt.Errorf("volume %q cannot be created: %w", req.GetName(), err))
		}
		if want.SizeBytes == 0 {
			if want.SizeBytes, err = defaultSize(ls); err != nil {
				return nil, err
			}
			if want.SizeBytes > 0 {
				source = sizeFromDefault
			}
			if err := checkMinSize(want.SizeBytes, want.Writable); err != nil {
				return nil, status.Errorf(codes.OutOfRange, "LayerSet %q: defaultSize: %s", want.Params.LayerSet, status.Convert(err).Message())
			}
		}
		if err := checkMaxSize(ls, want.SizeBytes, fmt.Sprintf("volume %q", req.GetName())); err != nil {
			return nil, err
		}
	}
	logger := klog.FromContext(ctx)
	if want.Params.UpperSizeHint != "" {
		// Still honoured for one release, for COs that send no capacity.
		logger.Info("Deprecated: StorageClass parameter "+paramUpperSizeHint+"; the claim's storage request (CSI capacity_range) is the volume's size",
			"name", want.Name, paramUpperSizeHint, want.Params.UpperSizeHint, "usedAsSize", source == sizeFromHint)
	}
	want.Created = time.Now().UTC()
	if err := c.volumes.Save(want.ID, want, atomicfile.Durable); err != nil {
		return nil, rpc.Status(ctx, err)
	}
	logger.Info("Created volume", "name", want.Name, "volumeID", want.ID, "layerSet", want.Params.LayerSet,
		"writable", want.Writable, "node", want.Node, "size", describeSize(want.SizeBytes), "sizeFrom", source)
	return &csi.CreateVolumeResponse{Volume: want.csiVolume()}, nil
}

// newVolume validates a CreateVolume request into the record it asks for,
// and says where its size came from. The LayerSet's defaultSize and
// maxSize are applied later, once the volume is known to be new.
func (c *Server) newVolume(req *csi.CreateVolumeRequest) (*createdVolume, sizeSource, error) {
	if err := rpc.RequireField("name", req.GetName()); err != nil {
		return nil, "", err
	}
	writable, err := checkCreateCapabilities(req.GetVolumeCapabilities())
	if err != nil {
		return nil, "", err
	}
	params, err := parseClassParams(req.GetParameters())
	if err != nil {
		return nil, "", err
	}
	required, limit, rangeSize, err := checkCapacityRange(req.GetCapacityRange())
	if err != nil {
		return nil, "", err
	}
	size, source, err := requestedSize(rangeSize, params)
	if err != nil {
		return nil, "", err
	}
	if err := checkMinSize(size, writable); err != nil {
		return nil, "", err
	}
	if req.GetVolumeContentSource() != nil {
		return nil, "", status.Error(codes.InvalidArgument, "volume_content_source is not supported: a volume starts as its LayerSet, it cannot be cloned or restored from a snapshot")
	}
	if len(req.GetMutableParameters()) > 0 {
		return nil, "", status.Errorf(codes.InvalidArgument, "mutable_parameters %v are not supported: this driver has no volume attributes to modify", req.GetMutableParameters())
	}
	v := &createdVolume{
		ID:            volumeIDForName(req.GetName()),
		Name:          req.GetName(),
		Params:        params,
		RequiredBytes: required,
		LimitBytes:    limit,
		Sized:         true,
		SizeBytes:     size,
		Writable:      writable,
	}
	if writable {
		if v.Node, err = pinnedNode(req.GetAccessibilityRequirements()); err != nil {
			return nil, "", err
		}
	}
	return v, source, nil
}

// compatible decides whether an existing volume answers a CreateVolume
// that asks for want: same parameters and capacity range, writable if
// writes are asked for, and reachable from the requisite topology.
func compatible(have, want *createdVolume, topo *csi.TopologyRequirement) error {
	conflict := func(format string, args ...any) error {
		return status.Errorf(codes.AlreadyExists, "volume %q exists with a different %s; delete it or choose another name",
			have.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case have.Params != want.Params:
		return conflict("LayerSet or upper size hint (%s %q, %s %q; asked for %q, %q)", names.ParamLayerSet, have.Params.LayerSet,
			paramUpperSizeHint, have.Params.UpperSizeHint, want.Params.LayerSet, want.Params.UpperSizeHint)
	case have.RequiredBytes != want.RequiredBytes || have.LimitBytes != want.LimitBytes:
		return conflict("capacity range (%d..%d bytes; asked for %d..%d)", have.RequiredBytes, have.LimitBytes, want.RequiredBytes, want.LimitBytes)
	case want.Writable && !have.Writable:
		return conflict("access: it was created read-only, writable access is asked for")
	case have.Node != "" && len(topo.GetRequisite()) > 0 && !requisiteHas(have.Node, topo.GetRequisite()):
		return conflict("topology: its upper lives on node %q, which the requisite topology %v excludes", have.Node, describeSegments(topo.GetRequisite()))
	}
	return nil
}

func (v *createdVolume) csiVolume() *csi.Volume {
	return &csi.Volume{
		VolumeId: v.ID,
		// 0, unknown, for a volume without a size: its writes take the
		// free space of the node's disk.
		CapacityBytes:      v.SizeBytes,
		VolumeContext:      v.volumeContext(),
		AccessibleTopology: pinnedTopology(v.Node),
	}
}

// volumeContext is what the node is told about the volume. A read-only
// volume has no upper, so its size, though recorded and reported, limits
// nothing and is not passed on.
func (v *createdVolume) volumeContext() map[string]string {
	if !v.Sized {
		return v.Params.volumeContext()
	}
	vc := map[string]string{names.ContextLayerSet: v.Params.LayerSet}
	if v.Writable && v.SizeBytes > 0 {
		vc[names.ContextSize] = quantity(v.SizeBytes)
	}
	return vc
}

// DeleteVolume forgets a volume. Its upper, if a node kept one, is removed
// by that node's sweep once the volume is gone. An unknown id is already
// deleted.
func (c *Server) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := rpc.RequireField("volume_id", id); err != nil {
		return nil, err
	}
	if !isControllerVolumeID(id) {
		return &csi.DeleteVolumeResponse{}, nil
	}
	v, release, err := c.lockVolume(id)
	if err != nil {
		return nil, err
	}
	defer release()
	if v == nil {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if err := c.volumes.Remove(id, atomicfile.Durable); err != nil {
		return nil, rpc.Status(ctx, fmt.Errorf("volume %s: %w", id, err))
	}
	klog.FromContext(ctx).Info("Deleted volume", "name", v.Name, "volumeID", id, "layerSet", v.Params.LayerSet, "node", v.Node)
	return &csi.DeleteVolumeResponse{}, nil
}

// ValidateVolumeCapabilities confirms capabilities, volume context and
// parameters that the volume supports; for others it says why not.
func (c *Server) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if err := rpc.RequireField("volume_id", id); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume_capabilities is missing")
	}
	var v *createdVolume
	if isControllerVolumeID(id) {
		var err error
		if v, err = c.volumes.Load(id); err != nil {
			return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
		}
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", id)
	}
	if msg := v.unsupported(req); msg != "" {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: msg}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

// unsupported says why the volume does not support what req asks, or ""
// if it does.
func (v *createdVolume) unsupported(req *csi.ValidateVolumeCapabilitiesRequest) string {
	writable, err := checkCreateCapabilities(req.GetVolumeCapabilities())
	switch {
	case err != nil:
		return status.Convert(err).Message()
	case writable && !v.Writable:
		return fmt.Sprintf("volume %s was created read-only; %s asks for writes", v.ID, describeCapabilities(req.GetVolumeCapabilities()))
	}
	if vc := req.GetVolumeContext(); len(vc) > 0 && !sameContext(vc, v.volumeContext()) {
		return fmt.Sprintf("volume context %v is not the volume's, %v", vc, v.volumeContext())
	}
	if params := req.GetParameters(); len(params) > 0 {
		p, err := parseClassParams(params)
		if err != nil {
			return status.Convert(err).Message()
		}
		if p != v.Params {
			return fmt.Sprintf("parameters %v do not match the volume's (%s %q, %s %q)", params,
				names.ParamLayerSet, v.Params.LayerSet, paramUpperSizeHint, v.Params.UpperSizeHint)
		}
	}
	if len(req.GetMutableParameters()) > 0 {
		return fmt.Sprintf("mutable_parameters %v are not supported", req.GetMutableParameters())
	}
	return ""
}

// sameContext compares volume contexts but for their sizes: a PV keeps
// the size it was created with in its attributes, which cannot change,
// while ControllerExpandVolume grows the volume.
func sameContext(a, b map[string]string) bool {
	a, b = maps.Clone(a), maps.Clone(b)
	delete(a, names.ContextSize)
	delete(b, names.ContextSize)
	return maps.Equal(a, b)
}
