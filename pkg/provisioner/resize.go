package provisioner

import (
	"context"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Event reasons, external-resizer's, so that what users and tests look
// for does not depend on which resizer runs.
const (
	reasonResizing         = "Resizing"
	reasonResizeFailed     = "VolumeResizeFailed"
	reasonResizeSucceeded  = "VolumeResizeSuccessful"
	reasonFSResizeRequired = "FileSystemResizeRequired"
	actionResize           = "Resize"
)

// resizes expands the volume of each bound claim of the driver whose
// storage request exceeds its capacity.
type resizes struct {
	opts   ResizerOptions
	client client.Client // cached: claims, volumes
	events recorder.EventRecorder
}

func (r *resizes) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var pvc corev1.PersistentVolumeClaim
	if err := r.client.Get(ctx, req.NamespacedName, &pvc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !pvc.DeletionTimestamp.IsZero() || !needsResize(&pvc) {
		return reconcile.Result{}, nil
	}
	var pv corev1.PersistentVolume
	if err := r.client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, nil // its arrival brings the claim back (see SetupResizer)
		}
		return reconcile.Result{}, err
	}
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != r.opts.DriverName ||
		pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != pvc.UID || pv.Spec.ClaimRef.Namespace != pvc.Namespace {
		return reconcile.Result{}, nil
	}
	size, ok := resizeTarget(&pvc, &pv)
	if !ok {
		return reconcile.Result{}, nil
	}
	if wait := infeasibleWait(&pvc, size, r.opts.InfeasibleRetry, time.Now()); wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	return r.resize(ctx, &pvc, &pv, size)
}

// resize expands pv to size and records it in pv and in the claim's
// status, for kubelet to expand on the node.
func (r *resizes) resize(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, size resource.Quantity) (reconcile.Result, error) {
	if err := r.patchStatus(ctx, pvc, optimistic, func(c *corev1.PersistentVolumeClaim) { markControllerResize(c, size, time.Now()) }); err != nil {
		return reconcile.Result{}, err
	}
	r.events.Eventf(pvc, pv, corev1.EventTypeNormal, reasonResizing, actionResize, "Resizing volume %s to %s", pv.Name, size.String())
	resp, err := r.expand(ctx, pv, size)
	if err != nil {
		return r.failed(ctx, pvc, pv, size, err)
	}
	capacity := size
	if resp.GetCapacityBytes() > 0 {
		capacity = *resource.NewQuantity(resp.GetCapacityBytes(), resource.BinarySI)
	}
	if err := r.setCapacity(ctx, pv, capacity); err != nil {
		return reconcile.Result{}, err
	}
	logger := log.FromContext(ctx)
	if resp.GetNodeExpansionRequired() {
		if err := r.patchStatus(ctx, pvc, optimistic, func(c *corev1.PersistentVolumeClaim) { markNodeResizePending(c, time.Now()) }); err != nil {
			return reconcile.Result{}, err
		}
		logger.Info("Expanded volume; its node is to expand it", "pv", pv.Name, "volumeID", pv.Spec.CSI.VolumeHandle, "capacity", capacity.String())
		r.events.Eventf(pvc, pv, corev1.EventTypeNormal, reasonFSResizeRequired, actionResize, "Require file system resize of volume on node")
		return reconcile.Result{}, nil
	}
	if err := r.patchStatus(ctx, pvc, optimistic, func(c *corev1.PersistentVolumeClaim) { markResizeFinished(c, capacity) }); err != nil {
		return reconcile.Result{}, err
	}
	logger.Info("Expanded volume", "pv", pv.Name, "volumeID", pv.Spec.CSI.VolumeHandle, "capacity", capacity.String())
	r.events.Eventf(pvc, pv, corev1.EventTypeNormal, reasonResizeSucceeded, actionResize, "Resize volume succeeded")
	return reconcile.Result{}, nil
}

// expand calls ControllerExpandVolume for pv.
func (r *resizes) expand(ctx context.Context, pv *corev1.PersistentVolume, size resource.Quantity) (*csi.ControllerExpandVolumeResponse, error) {
	req := &csi.ControllerExpandVolumeRequest{
		VolumeId:      pv.Spec.CSI.VolumeHandle,
		CapacityRange: &csi.CapacityRange{RequiredBytes: size.Value()},
	}
	if len(pv.Spec.AccessModes) > 0 {
		if mode, err := accessMode(pv.Spec.AccessModes[0]); err == nil {
			req.VolumeCapability = &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: pv.Spec.CSI.FSType, MountFlags: pv.Spec.MountOptions}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	return r.opts.Controller.ControllerExpandVolume(cctx, req)
}

// failed records a failed expansion on the claim: an Event saying why and
// the status external-resizer gives it. A refusal is tried again after
// InfeasibleRetry, anything else with backoff.
func (r *resizes) failed(ctx context.Context, pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, size resource.Quantity, err error) (reconcile.Result, error) {
	msg := fmt.Sprintf("resizing volume %s to %s: %s", pv.Name, size.String(), status.Convert(err).Message())
	r.events.Eventf(pvc, pv, corev1.EventTypeWarning, reasonResizeFailed, actionResize, "%s", truncate(msg))
	outcome := classifyResizeError(err)
	// Unconditional: a refusal is recorded even if the claim changed
	// meanwhile; the next look at it sees the change.
	if outcome != resizeRetried {
		if perr := r.patchStatus(ctx, pvc, unconditional, func(c *corev1.PersistentVolumeClaim) { markResizeFailed(c, outcome, msg, time.Now()) }); perr != nil {
			return reconcile.Result{}, fmt.Errorf("%s; recording it on claim %s/%s: %w", msg, pvc.Namespace, pvc.Name, perr)
		}
	}
	if outcome == resizeInfeasible {
		log.FromContext(ctx).Info("Volume expansion refused; trying again later", "pv", pv.Name, "size", size.String(),
			"retryAfter", r.opts.InfeasibleRetry, "reason", status.Convert(err).Message())
		return reconcile.Result{RequeueAfter: r.opts.InfeasibleRetry}, nil
	}
	return reconcile.Result{}, fmt.Errorf("%s: %w", msg, err)
}

// classifyResizeError tells, as external-resizer does, a refusal from a
// failure and a failure from a call that may still be going on or may
// succeed if repeated.
func classifyResizeError(err error) resizeOutcome {
	st, ok := status.FromError(err)
	if !ok {
		return resizeRetried
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.OutOfRange, codes.NotFound:
		return resizeInfeasible
	case codes.Canceled, codes.DeadlineExceeded, codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		return resizeRetried
	}
	return resizeFailed
}

// setCapacity raises pv's spec.capacity to capacity: kubelet expands the
// volume on its node to the PV's capacity.
func (r *resizes) setCapacity(ctx context.Context, pv *corev1.PersistentVolume, capacity resource.Quantity) error {
	if have := pv.Spec.Capacity[corev1.ResourceStorage]; have.Cmp(capacity) >= 0 {
		return nil
	}
	base := pv.DeepCopy()
	if pv.Spec.Capacity == nil {
		pv.Spec.Capacity = corev1.ResourceList{}
	}
	pv.Spec.Capacity[corev1.ResourceStorage] = capacity
	if err := r.client.Patch(ctx, pv, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("setting the capacity of PersistentVolume %s to %s: %w", pv.Name, capacity.String(), err)
	}
	return nil
}

// patchMode says whether a status patch applies only to the claim as it
// was read.
type patchMode int

const (
	optimistic patchMode = iota
	unconditional
)

// patchStatus changes the claim's status with change and patches it; the
// claim is updated to what the API server returns.
func (r *resizes) patchStatus(ctx context.Context, pvc *corev1.PersistentVolumeClaim, mode patchMode, change func(*corev1.PersistentVolumeClaim)) error {
	base := pvc.DeepCopy()
	change(pvc)
	patch := client.MergeFrom(base)
	if mode == optimistic {
		patch = client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})
	}
	if err := r.client.Status().Patch(ctx, pvc, patch); err != nil {
		return fmt.Errorf("updating the resize status of claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	return nil
}
