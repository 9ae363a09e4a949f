package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	csicontroller "github.com/layerset/layerset-csi/pkg/csi/controller"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// ResizerControllerName names the resizer in logs, metrics and Events.
const ResizerControllerName = "layerset-resizer"

// DefaultInfeasibleRetry is how long a claim whose expansion was refused
// waits before the same size is asked for again.
const DefaultInfeasibleRetry = 5 * time.Minute

// Expander grows volumes: the CSI controller service of pkg/csi/controller,
// called in process.
type Expander interface {
	ControllerExpandVolume(context.Context, *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error)
}

var _ Expander = (*csicontroller.Server)(nil)

// ResizerOptions configure the resizer.
type ResizerOptions struct {
	// DriverName is the driver whose PersistentVolumes are resized;
	// default names.DriverName.
	DriverName string
	// Controller expands the volumes.
	Controller Expander
	// Timeout bounds each call to Controller; default DefaultTimeout.
	Timeout time.Duration
	// Workers bounds the claims resized at once; 0 means 4.
	Workers int
	// InfeasibleRetry is how long a claim whose expansion was refused
	// (a shrink, a size above the LayerSet's maxSize) waits before the
	// same size is tried again, in case what refused it changed; default
	// DefaultInfeasibleRetry. A new request in the claim is tried at once.
	InfeasibleRetry time.Duration
}

func (o *ResizerOptions) setDefaults() error {
	if o.Controller == nil {
		return errors.New("resizer: no CSI controller service")
	}
	if o.Timeout < 0 || o.Workers < 0 || o.InfeasibleRetry < 0 {
		return fmt.Errorf("resizer: timeout %s, workers %d and infeasible retry %s must not be negative", o.Timeout, o.Workers, o.InfeasibleRetry)
	}
	if o.DriverName == "" {
		o.DriverName = names.DriverName
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	if o.InfeasibleRetry == 0 {
		o.InfeasibleRetry = DefaultInfeasibleRetry
	}
	return nil
}

// SetupResizer registers the resizer with mgr: the controller that expands
// the volumes of bound claims whose storage request grew, for clusters
// that run no external-resizer sidecar. It runs only on the elected
// leader when mgr elects one.
func SetupResizer(mgr ctrl.Manager, opts ResizerOptions) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	r := &resizes{opts: opts, client: mgr.GetClient(), events: mgr.GetEventRecorder(ResizerControllerName)}
	err := ctrl.NewControllerManagedBy(mgr).
		Named(ResizerControllerName).
		For(&corev1.PersistentVolumeClaim{}, builder.WithPredicates(bound())).
		// A claim whose volume the cache had not seen yet is looked at
		// again when it arrives, and when its capacity changes.
		Watches(&corev1.PersistentVolume{}, handler.EnqueueRequestsFromMapFunc(claimOf),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(obj client.Object) bool {
				pv, ok := obj.(*corev1.PersistentVolume)
				return ok && pv.Spec.CSI != nil && pv.Spec.CSI.Driver == opts.DriverName
			}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.Workers, RateLimiter: rateLimiter()}).
		Complete(r)
	if err != nil {
		return fmt.Errorf("resizer: %w", err)
	}
	return nil
}

// bound passes claims bound to a volume: only those can be resized.
func bound() predicate.Funcs {
	return predicate.NewPredicateFuncs(func(obj client.Object) bool {
		c, ok := obj.(*corev1.PersistentVolumeClaim)
		return ok && c.Spec.VolumeName != ""
	})
}

// claimOf maps a PersistentVolume to the claim it is bound to.
func claimOf(_ context.Context, obj client.Object) []reconcile.Request {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.Name == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: pv.Spec.ClaimRef.Namespace, Name: pv.Spec.ClaimRef.Name}}}
}
