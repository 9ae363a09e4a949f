package node

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// Event reason and action of a volume still waiting for its layers.
const (
	reasonPulling   = "Pulling"
	eventActionPull = "PullLayers"
)

// watchPull follows the layer imports of one publish or stage. When the
// call then ends because its caller's deadline passed (kubelet's, which
// retries) while layers are still being pulled, the returned function
// says where the pull stands: in an event on the pod (inline volumes) or
// PersistentVolume, and in front of the call's error, whose code stays
// what the deadline makes it. The pull itself goes on, detached, and the
// retry joins it.
//
// Kubelet's retries back off exponentially, so one event per timed-out
// call is a bounded rate; the event recorder folds repeats together.
func (n *Server) watchPull(ctx context.Context, volumeID string, vc map[string]string) (context.Context, func(error) error) {
	ctx, watch := layers.WatchImports(ctx)
	return ctx, func(err error) error {
		if err == nil || ctx.Err() == nil {
			return err
		}
		p := n.cfg.Store.ChainProgress(watch.Layers())
		if p.Layers == 0 || p.Complete() {
			return err // the deadline passed after the pull, or before it began
		}
		layerSet := vc[names.ContextLayerSet]
		if n.cfg.Events != nil {
			n.cfg.Events.Eventf(volumeOwner(volumeID, vc), nil, corev1.EventTypeNormal, reasonPulling, eventActionPull,
				"volume %s waits for the layers of LayerSet %s: pulling %s", volumeID, layerSet, p)
		}
		logger(ctx).Info("Volume still waits for its layers", "layerSet", layerSet, "done", p.Done, "total", p.Total,
			"layers", p.Layers, "present", p.Present, "pulling", p.Pulling)
		return fmt.Errorf("pulling the layers of LayerSet %s: %s; the pull goes on, and a retry waits for it: %w", layerSet, p, err)
	}
}

// volumeOwner is what an event about a volume is about: the pod of an
// inline volume, whose volume context names it, else the
// PersistentVolume, which CSI names the volume after.
func volumeOwner(volumeID string, vc map[string]string) runtime.Object {
	if pod := vc[names.ContextPodName]; pod != "" {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
			Name: pod, Namespace: vc[names.ContextPodNamespace], UID: types.UID(vc[names.ContextPodUID]),
		}}
	}
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: volumeID}}
}
