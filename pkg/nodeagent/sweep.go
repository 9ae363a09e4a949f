package nodeagent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// indexVolumeHandle indexes PersistentVolumes of the driver by their
// volume handle, the id a node knows their volume by.
const indexVolumeHandle = "layerset.io/volumeHandle"

// sweepKey is the sweeper's one key.
var sweepKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "persistent-uppers"}}

func volumeHandleIndex(driverName string) client.IndexerFunc {
	return func(obj client.Object) []string {
		pv, ok := obj.(*corev1.PersistentVolume)
		if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName || pv.Spec.CSI.VolumeHandle == "" {
			return nil
		}
		return []string{pv.Spec.CSI.VolumeHandle}
	}
}

// sweeper removes the uppers of persistent volumes whose PersistentVolume
// is gone. It runs after any PersistentVolume is deleted and every
// interval.
type sweeper struct {
	sweep    Sweeper
	pvs      client.Reader // the cache, indexed by indexVolumeHandle
	interval time.Duration
}

func (s *sweeper) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	removed, err := s.sweep.SweepUppers(ctx, s.exists)
	if len(removed) > 0 {
		logger.Info("Removed the uppers of deleted PersistentVolumes", "volumeIDs", removed)
	}
	if err != nil {
		// Volumes the sweep could not remove stay; the next sweep tries
		// them again.
		logger.Error(err, "Sweeping the uppers of deleted PersistentVolumes")
	}
	return reconcile.Result{RequeueAfter: s.interval}, nil
}

// exists reports whether a PersistentVolume of the driver has volume
// handle id. The cache has listed every PersistentVolume before the
// sweeper's first run, so "none" means none.
func (s *sweeper) exists(ctx context.Context, id string) (bool, error) {
	var list corev1.PersistentVolumeList
	if err := s.pvs.List(ctx, &list, client.MatchingFields{indexVolumeHandle: id}); err != nil {
		return false, fmt.Errorf("looking up the PersistentVolume of volume %s: %w", id, err)
	}
	return len(list.Items) > 0, nil
}
