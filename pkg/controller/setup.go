package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// Field indexes of the controller's cache.
const (
	// indexIncludes: names of the LayerSets a LayerSet includes, directly
	// (spec) or not (status.includes).
	indexIncludes = "layerset.io/includes"
	// indexPullSecrets: "namespace/name" of the Secrets a LayerSet pulls
	// with, its own (spec) and those of what it includes (status).
	indexPullSecrets = "layerset.io/pullSecrets"
	// indexNodeCacheLayerSets: names of the LayerSets a NodeCache reports.
	indexNodeCacheLayerSets = "layerset.io/layerSets"
	// indexPrefetch: "true" on LayerSets that select nodes to prefetch on.
	indexPrefetch = "layerset.io/prefetch"
)

// ControllerName names the controller in logs, metrics and Events.
const ControllerName = "layerset-controller"

// SetupWithManager registers the reconciler, its cache indexes and its
// watches with mgr. The manager's cache should hold only the metadata of
// Secrets and Nodes (see NewManager): the reconciler never reads Secret
// data from it.
func SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	r := &reconciler{
		client:    mgr.GetClient(),
		apiReader: mgr.GetAPIReader(),
		events:    mgr.GetEventRecorder(ControllerName),
		opts:      opts,
		now:       time.Now,
	}
	idx := mgr.GetFieldIndexer()
	for _, i := range []struct {
		obj   client.Object
		field string
		fn    client.IndexerFunc
	}{
		{&v1alpha1.LayerSet{}, indexIncludes, includedNames},
		{&v1alpha1.LayerSet{}, indexPullSecrets, pullSecretKeys},
		{&v1alpha1.LayerSet{}, indexPrefetch, prefetchKey},
		{&v1alpha1.NodeCache{}, indexNodeCacheLayerSets, reportedNames},
	} {
		if err := idx.IndexField(ctx, i.obj, i.field, i.fn); err != nil {
			return fmt.Errorf("indexing %T by %s: %w", i.obj, i.field, err)
		}
	}
	workers := opts.MaxConcurrentReconciles
	if workers <= 0 {
		workers = 4
	}
	specChanged := builder.WithPredicates(predicate.GenerationChangedPredicate{})
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&v1alpha1.LayerSet{}, specChanged).
		Watches(&v1alpha1.LayerSet{}, handler.EnqueueRequestsFromMapFunc(r.includers), specChanged).
		Watches(&v1alpha1.NodeCache{}, handler.EnqueueRequestsFromMapFunc(reported)).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.pullingWith)).
		WatchesMetadata(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.prefetchingOn),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: workers,
			// Failures of the API server back off per LayerSet; registry
			// failures are retried by the reconciler's own schedule.
			RateLimiter: workqueue.NewTypedMaxOfRateLimiter(
				workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, maxRetry),
				&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
			),
		}).
		Complete(r)
}

func includedNames(obj client.Object) []string {
	ls := obj.(*v1alpha1.LayerSet)
	var out []string
	for _, e := range ls.Spec.Layers {
		if e.LayerSet != "" {
			out = append(out, e.LayerSet)
		}
	}
	for _, inc := range ls.Status.Includes {
		out = append(out, inc.Name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func pullSecretKeys(obj client.Object) []string {
	ls := obj.(*v1alpha1.LayerSet)
	var out []string
	for _, s := range appendSecrets(slices.Clone(ls.Spec.PullSecrets), ls.Status.PullSecrets) {
		out = append(out, s.Namespace+"/"+s.Name)
	}
	return out
}

func prefetchKey(obj client.Object) []string {
	if obj.(*v1alpha1.LayerSet).Spec.Prefetch != nil {
		return []string{"true"}
	}
	return nil
}

func reportedNames(obj client.Object) []string {
	nc := obj.(*v1alpha1.NodeCache)
	out := make([]string, 0, len(nc.Status.LayerSets))
	for _, e := range nc.Status.LayerSets {
		out = append(out, e.Name)
	}
	return out
}

// includers maps a LayerSet to those that include it.
func (r *reconciler) includers(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.layerSetsBy(ctx, indexIncludes, obj.GetName())
}

// pullingWith maps a Secret to the LayerSets that pull with it.
func (r *reconciler) pullingWith(ctx context.Context, obj client.Object) []reconcile.Request {
	return r.layerSetsBy(ctx, indexPullSecrets, obj.GetNamespace()+"/"+obj.GetName())
}

// reported maps a NodeCache to the LayerSets it reports on. On an update
// the map runs on the old and the new object, so a LayerSet the node
// stopped reporting is counted again too.
func reported(_ context.Context, obj client.Object) []reconcile.Request {
	return requests(reportedNames(obj))
}

// prefetchingOn maps a Node to the LayerSets whose prefetch selector
// matches its labels. On a label change the map runs on the old and the new
// labels, which covers the node leaving a selection and entering one.
func (r *reconciler) prefetchingOn(ctx context.Context, obj client.Object) []reconcile.Request {
	var list v1alpha1.LayerSetList
	if err := r.client.List(ctx, &list, client.MatchingFields{indexPrefetch: "true"}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Cannot list LayerSets that prefetch")
		return nil
	}
	var names []string
	for _, ls := range list.Items {
		sel, err := metav1.LabelSelectorAsSelector(ls.Spec.Prefetch)
		if err == nil && sel.Matches(labels.Set(obj.GetLabels())) {
			names = append(names, ls.Name)
		}
	}
	return requests(names)
}

func (r *reconciler) layerSetsBy(ctx context.Context, index, key string) []reconcile.Request {
	var list v1alpha1.LayerSetList
	if err := r.client.List(ctx, &list, client.MatchingFields{index: key}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Cannot list LayerSets", "index", index, "key", key)
		return nil
	}
	names := make([]string, len(list.Items))
	for i, ls := range list.Items {
		names[i] = ls.Name
	}
	return requests(names)
}

func requests(names []string) []reconcile.Request {
	out := make([]reconcile.Request, len(names))
	for i, n := range names {
		out[i].Name = n
	}
	return out
}
