package provisioner

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Controller names, in logs, metrics and Events.
const (
	ClaimControllerName  = "layerset-provisioner"
	VolumeControllerName = "layerset-provisioner-deleter"
)

// indexClass indexes claims by the name of their StorageClass.
const indexClass = "layerset.io/storageClassName"

// Setup registers the provisioner with mgr: one controller for claims,
// one for the PersistentVolumes it made. Both run only on the elected
// leader when mgr elects one. The storage.k8s.io/v1 types are added to
// mgr's scheme if it lacks them.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	if !mgr.GetScheme().Recognizes(storagev1.SchemeGroupVersion.WithKind("StorageClass")) {
		if err := storagev1.AddToScheme(mgr.GetScheme()); err != nil {
			return fmt.Errorf("provisioner: %w", err)
		}
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.PersistentVolumeClaim{}, indexClass,
		func(obj client.Object) []string {
			if c := obj.(*corev1.PersistentVolumeClaim).Spec.StorageClassName; c != nil && *c != "" {
				return []string{*c}
			}
			return nil
		}); err != nil {
		return fmt.Errorf("provisioner: indexing claims: %w", err)
	}
	events := mgr.GetEventRecorder(ClaimControllerName)
	c := &claims{opts: opts, client: mgr.GetClient(), api: mgr.GetAPIReader(), events: events}
	err := ctrl.NewControllerManagedBy(mgr).
		Named(ClaimControllerName).
		For(&corev1.PersistentVolumeClaim{}, builder.WithPredicates(unbound())).
		Watches(&storagev1.StorageClass{}, handler.EnqueueRequestsFromMapFunc(c.ofClass),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.Workers, RateLimiter: rateLimiter()}).
		Complete(c)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	v := &volumes{opts: opts, client: mgr.GetClient(), api: mgr.GetAPIReader(), events: events}
	err = ctrl.NewControllerManagedBy(mgr).
		Named(VolumeControllerName).
		For(&corev1.PersistentVolume{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(obj client.Object) bool {
			pv, ok := obj.(*corev1.PersistentVolume)
			return ok && ours(pv, opts.DriverName)
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.Workers, RateLimiter: rateLimiter()}).
		Complete(v)
	if err != nil {
		return fmt.Errorf("provisioner: %w", err)
	}
	return nil
}

// rateLimiter retries a failed claim or volume after 1s, doubling up to
// 5 minutes, and bounds retries overall.
func rateLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, 5*time.Minute),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// unbound passes claims that wait for a volume.
func unbound() predicate.Funcs {
	return predicate.NewPredicateFuncs(func(obj client.Object) bool {
		c, ok := obj.(*corev1.PersistentVolumeClaim)
		return ok && c.Spec.VolumeName == ""
	})
}

// ofClass maps a StorageClass to the claims that name it, which wait for
// it when it is created after them.
func (r *claims) ofClass(ctx context.Context, obj client.Object) []reconcile.Request {
	var list corev1.PersistentVolumeClaimList
	if err := r.client.List(ctx, &list, client.MatchingFields{indexClass: obj.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Cannot list the claims of a StorageClass", "storageClass", obj.GetName())
		return nil
	}
	var out []reconcile.Request
	for _, c := range list.Items {
		if c.Spec.VolumeName == "" {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&c)})
		}
	}
	return out
}
