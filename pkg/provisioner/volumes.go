package provisioner

import (
	"context"
	"fmt"
	"slices"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// volumes keeps the finalizer of the PersistentVolumes the provisioner
// made and deletes their volumes when their claims are gone.
type volumes struct {
	opts   Options
	client client.Client // cached: volumes
	api    client.Reader // uncached
	events recorder.EventRecorder
}

func (r *volumes) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pv corev1.PersistentVolume
	if err := r.client.Get(ctx, req.NamespacedName, &pv); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !ours(&pv, r.opts.DriverName) {
		return reconcile.Result{}, nil
	}
	if want, decided := wantsFinalizer(&pv); decided && want != slices.Contains(pv.Finalizers, Finalizer) {
		if err := r.setFinalizer(ctx, &pv, want); err != nil {
			return reconcile.Result{}, err
		}
	}
	if !shouldDelete(&pv) {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, r.delete(ctx, &pv)
}

// delete deletes the volume, then the PersistentVolume, then lets it go.
func (r *volumes) delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	dctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	_, err := r.opts.Controller.DeleteVolume(dctx, &csi.DeleteVolumeRequest{VolumeId: pv.Spec.CSI.VolumeHandle})
	cancel()
	if err != nil {
		r.events.Eventf(pv, nil, corev1.EventTypeWarning, reasonDeleteFailed, actionDelete, "%s", truncate(err.Error()))
		return fmt.Errorf("deleting volume %s of PersistentVolume %s: %w", pv.Spec.CSI.VolumeHandle, pv.Name, err)
	}
	if pv.DeletionTimestamp == nil {
		if err := r.client.Delete(ctx, pv, client.Preconditions{UID: &pv.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting PersistentVolume %s: %w", pv.Name, err)
		}
		// Deleting changed it; the finalizers are patched on what it is now.
		if err := r.api.Get(ctx, client.ObjectKeyFromObject(pv), pv); err != nil {
			return client.IgnoreNotFound(err)
		}
	}
	if err := r.setFinalizer(ctx, pv, false); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	log.FromContext(ctx).Info("Deleted volume of a released claim", "pv", pv.Name, "volumeID", pv.Spec.CSI.VolumeHandle)
	return nil
}

// setFinalizer adds or removes Finalizer, leaving other finalizers alone.
func (r *volumes) setFinalizer(ctx context.Context, pv *corev1.PersistentVolume, want bool) error {
	if want == slices.Contains(pv.Finalizers, Finalizer) {
		return nil
	}
	base := pv.DeepCopy()
	if want {
		pv.Finalizers = append(pv.Finalizers, Finalizer)
	} else {
		pv.Finalizers = slices.DeleteFunc(pv.Finalizers, func(f string) bool { return f == Finalizer })
	}
	// The optimistic lock keeps a concurrent change to the list from
	// being overwritten: a merge patch replaces lists whole.
	if err := r.client.Patch(ctx, pv, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("updating the finalizers of PersistentVolume %s: %w", pv.Name, err)
	}
	return nil
}
