package node

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// Health reasons, CamelCase as the spec asks.
const (
	reasonNotMounted   = "NotMounted"
	reasonUpperMissing = "UpperMissing"
)

// NodeGetVolumeHealth reports a volume whose mounts are gone (unmounted
// behind the plugin's back, or a reboot kubelet has not caught up with),
// or whose directories are gone from the layer store. A persistent volume
// that is not staged is healthy: its upper waits on disk.
func (n *Server) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	if err := rpc.RequireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	health, err := n.volumeHealth(req.GetVolumeId(), req.GetStagingTargetPath(), req.GetVolumePublishPath())
	if err != nil {
		return nil, n.status(ctx, err)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: health}, nil
}

func (n *Server) volumeHealth(id, staging, publish string) (*csi.VolumeHealth, error) {
	rec, err := n.state.load(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s is not on this node", id)
	}
	health := &csi.VolumeHealth{VolumeId: id}
	var unmounted []string
	for _, p := range expectedMounts(rec, staging, publish) {
		mounted, err := isMounted(p)
		if err != nil {
			return nil, err
		}
		if !mounted {
			unmounted = append(unmounted, p)
		}
	}
	if len(unmounted) > 0 {
		health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
			Status:  csi.VolumeHealthErrorType_INACCESSIBLE,
			Reason:  reasonNotMounted,
			Message: fmt.Sprintf("volume %s should be mounted at %s but is not", id, strings.Join(unmounted, ", ")),
		})
	}
	if _, err := n.cfg.Store.Volume(id); errors.Is(err, layers.ErrVolumeNotFound) && rec.Phase != phaseStaging && rec.Phase != phasePublishing {
		health.HealthStatuses = append(health.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
			Status:  csi.VolumeHealthErrorType_DATA_LOSS,
			Reason:  reasonUpperMissing,
			Message: fmt.Sprintf("the layer store %s holds no directories for volume %s; its writes are gone", n.cfg.Store.Dir(), id),
		})
	} else if err != nil && !errors.Is(err, layers.ErrVolumeNotFound) {
		return nil, err
	}
	return health, nil
}

// expectedMounts lists where the record says the volume is mounted,
// narrowed to the paths the caller asks about when it names any.
func expectedMounts(rec *volumeRecord, staging, publish string) []string {
	var all []string
	if rec.MountPath != "" && (rec.Phase == phaseStaged || rec.Phase == phasePublished) {
		all = append(all, rec.MountPath)
	}
	for _, t := range rec.Targets {
		if t.Phase == phasePublished {
			all = append(all, t.Path)
		}
	}
	if staging == "" && publish == "" {
		return all
	}
	var out []string
	for _, p := range all {
		if p == staging || p == publish {
			out = append(out, p)
		}
	}
	return out
}
