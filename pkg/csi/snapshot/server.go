package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/record"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/assemble"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

// VolumeInfo is what a Lookup knows of a volume.
type VolumeInfo struct {
	// Exists is false for a volume there is no such volume.
	Exists bool
	// LayerSet is the LayerSet the volume is composed from.
	LayerSet string
	// ReadOnly says the volume can only be composed read-only (its
	// access modes all read-only).
	ReadOnly bool
}

// Lookup tells of a volume this node has not composed. An error is a
// failure to find out, not a missing volume.
type Lookup func(ctx context.Context, volumeID string) (VolumeInfo, error)

// Config configures the snapshot service.
type Config struct {
	// NodeID is the node's id, as NodeGetInfo reports it; it is part of
	// every local snapshot id.
	NodeID string
	// StateDir is the node service's state directory: the node's volume
	// records are read there, and the snapshots are kept in
	// StateDir/snapshots.
	StateDir string
	Store    *layers.Store
	// Catalog resolves the LayerSet of a volume the node never composed.
	Catalog catalog.Catalog
	// Source reaches registries: pushes (Insecure hosts, the node's
	// Keychain for pushes without secrets) and the images of the chain's
	// layers, which a pushed image holds byte for byte.
	Source source.Options
	// Lookup tells of volumes this node never composed; nil makes every
	// such volume NotFound.
	Lookup Lookup
}

func (c *Config) check() error {
	switch {
	case c.StateDir == "" || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("state directory %q must be an absolute path", c.StateDir)
	case c.Store == nil:
		return errors.New("no layer store")
	case c.Catalog == nil:
		return errors.New("no LayerSet catalog")
	}
	return checkNodeID(c.NodeID)
}

// Server is the snapshot service: a CSI Controller service of snapshot
// RPCs only.
type Server struct {
	csi.UnimplementedControllerServer

	cfg      Config
	ctx      context.Context // the service's life: snapshots in the making stop with it
	records  snapshotRecords
	volumes  *record.Store[nodeVolume]
	names    *rpc.Inflight
	slots    *volumeSlots
	assemble *assemble.Assembler
}

var _ csi.ControllerServer = (*Server)(nil)

// tempPrefix starts the ids of the private volumes snapshots of volumes
// this node never composed are committed from. A ':' is no character of
// a readable id, so the store hashes them into directory names, and no
// CSI volume is given such an id by a CO that asks this node.
const tempPrefix = "layerset-snapshot:"

// New returns the snapshot service, which lives as long as ctx. It removes
// what snapshots a crash interrupted left: their private volumes and the
// blob folders of names with no record.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("snapshot service: %w", err)
	}
	recs, err := openSnapshotRecords(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("snapshot service: %w", err)
	}
	vols, err := openNodeRecords(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("snapshot service: %w", err)
	}
	s := &Server{
		cfg: cfg, ctx: ctx, records: recs, volumes: vols, names: rpc.NewInflight(), slots: newVolumeSlots(),
		assemble: assemble.New(assemble.Options{Store: cfg.Store, Catalog: cfg.Catalog, NodeName: cfg.NodeID}),
	}
	if err := s.cleanup(ctx); err != nil {
		return nil, fmt.Errorf("snapshot service: %w", err)
	}
	return s, nil
}

func (s *Server) cleanup(ctx context.Context) error {
	log := klog.FromContext(ctx)
	vols, err := s.cfg.Store.Volumes()
	if err != nil {
		return err
	}
	for _, v := range vols {
		if strings.HasPrefix(v.ID, tempPrefix) {
			if err := s.removeTemp(ctx, v.ID); err != nil {
				return fmt.Errorf("remove the private volume of an interrupted snapshot: %w", err)
			}
			log.Info("Removed the private volume of an interrupted snapshot", "volumeID", v.ID)
		}
	}
	if err := os.MkdirAll(filepath.Join(s.records.Dir(), tempMounts), 0o700); err != nil {
		return err
	}
	removed, err := s.records.sweepBlobs()
	if len(removed) > 0 {
		log.Info("Removed the blobs of interrupted or deleted snapshots", "folders", removed)
	}
	if err != nil {
		return err
	}
	_, bad, err := s.records.List()
	for _, b := range bad {
		log.Error(b, "A snapshot record cannot be read; it is left out of ListSnapshots")
	}
	if err == nil {
		log.V(2).Info("Snapshot service ready", "records", s.records.Dir())
	}
	return err
}

// Check reports whether snapshots can be recorded.
func (s *Server) Check(context.Context) error {
	if err := unix.Access(s.records.Dir(), unix.W_OK); err != nil {
		return fmt.Errorf("snapshots: records %s are not writable: %w", s.records.Dir(), err)
	}
	return nil
}

// PluginCapabilities says that snapshots are not usable everywhere: one
// kept on a node restores only there (identity.CapabilityProvider).
func (s *Server) PluginCapabilities() []*csi.PluginCapability {
	return []*csi.PluginCapability{{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
		Type: csi.PluginCapability_Service_SNAPSHOT_ACCESSIBILITY_CONSTRAINTS,
	}}}}
}

func controllerCapabilities() []*csi.ControllerServiceCapability {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{
			Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}},
		})
	}
	return caps
}

// ControllerGetCapabilities lists the snapshot RPCs: what csi-snapshotter
// checks for before it serves a node.
func (s *Server) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: controllerCapabilities()}, nil
}

// classify tells the codes of the store's and the archive's errors.
func classify(err error) (codes.Code, bool) {
	switch {
	case errors.Is(err, layers.ErrVolumeNotFound):
		return codes.NotFound, true
	case errors.Is(err, layers.ErrLayerTooLarge), errors.Is(err, archive.ErrLimit):
		return codes.ResourceExhausted, true
	case errors.Is(err, archive.ErrFileChanged):
		return codes.Aborted, true // the pod kept rewriting a file; a retry packs it again
	case errors.Is(err, layers.ErrLayerMissing):
		return codes.Unavailable, true
	case errors.Is(err, layers.ErrTooManyLayers), errors.Is(err, layers.ErrDigestMismatch), errors.Is(err, layers.ErrCorruptLayer):
		return codes.FailedPrecondition, true
	}
	return codes.OK, false
}
