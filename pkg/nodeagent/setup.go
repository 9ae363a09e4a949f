package nodeagent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/assemble"
)

// Controller names, in logs and metrics.
const (
	CacheControllerName = "layerset-nodecache"
	SweepControllerName = "layerset-sweeper"
)

// Setup registers the node agent with mgr, which should come from
// NewManager: the cache, the prefetch, the report, and, with a Sweeper,
// the sweep of uppers. None of them waits for leader election.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := opts.setDefaults(); err != nil {
		return err
	}
	a := &agent{
		opts:     opts,
		client:   mgr.GetClient(),
		api:      mgr.GetAPIReader(),
		now:      time.Now,
		changed:  make(chan struct{}, 1),
		assemble: assemble.New(assemble.Options{Store: opts.Store, Catalog: opts.Catalog, NodeName: opts.NodeName}),
	}
	a.prefetch = newPrefetcher(a.pull, a.poke)
	a.prefetch.progress, a.prefetch.progressEvery = opts.Store.ChainProgress, opts.ProgressInterval
	for _, r := range []interface {
		Start(context.Context) error
		NeedLeaderElection() bool
	}{a.prefetch, storeWatcher{dir: opts.Store.Dir(), changed: a.poke}} {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	toNode := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{a.key()}
	})
	err := ctrl.NewControllerManagedBy(mgr).
		Named(CacheControllerName).
		Watches(&corev1.Node{}, toNode, builder.WithPredicates(nodeChanged(opts.NodeName))).
		Watches(&v1alpha1.LayerSet{}, toNode, builder.WithPredicates(layerSetChanged())).
		Watches(&v1alpha1.NodeCache{}, toNode, builder.WithPredicates(deleted(opts.NodeName))).
		WatchesRawSource(source.Func(a.wakeOnChange)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, NeedLeaderElection: new(false)}).
		Complete(a)
	if err != nil {
		return fmt.Errorf("node agent: %w", err)
	}
	if opts.Sweeper == nil {
		return nil
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &corev1.PersistentVolume{},
		indexVolumeHandle, volumeHandleIndex(opts.DriverName)); err != nil {
		return fmt.Errorf("node agent: indexing PersistentVolumes: %w", err)
	}
	s := &sweeper{sweep: opts.Sweeper, pvs: mgr.GetClient(), interval: opts.SweepInterval}
	toSweep := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{sweepKey}
	})
	err = ctrl.NewControllerManagedBy(mgr).
		Named(SweepControllerName).
		Watches(&corev1.PersistentVolume{}, toSweep, builder.WithPredicates(deleted(""))).
		// Sweep once at start: volumes deleted while the node was down.
		WatchesRawSource(source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
			q.Add(sweepKey)
			return nil
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, NeedLeaderElection: new(false)}).
		Complete(s)
	if err != nil {
		return fmt.Errorf("node agent: %w", err)
	}
	return nil
}

// nodeChanged passes events of the named Node that change what it
// selects: its labels, or the Node itself.
func nodeChanged(name string) predicate.Funcs {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { return e.Object.GetName() == name },
		DeleteFunc: func(e event.DeleteEvent) bool { return e.Object.GetName() == name },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return e.ObjectNew.GetName() == name && (e.ObjectOld.GetUID() != e.ObjectNew.GetUID() ||
				!equality.Semantic.DeepEqual(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()))
		},
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

// layerSetChanged passes LayerSet events that change what the node
// pulls or reports: a new spec, a new chain, a new resolution outcome. The
// controller also writes the cache counts into the status, every time a
// node reports; those updates are dropped, or every node would answer
// every other node's report.
func layerSetChanged() predicate.Funcs {
	return predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.LayerSet)
			n, ok2 := e.ObjectNew.(*v1alpha1.LayerSet)
			if !ok1 || !ok2 {
				return true
			}
			return o.Generation != n.Generation || o.Status.ObservedGeneration != n.Status.ObservedGeneration ||
				o.Status.ChainID != n.Status.ChainID || !o.DeletionTimestamp.Equal(n.DeletionTimestamp) ||
				!equality.Semantic.DeepEqual(resolvedCondition(o), resolvedCondition(n))
		},
	}
}

func resolvedCondition(ls *v1alpha1.LayerSet) any {
	c := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved)
	if c == nil {
		return nil
	}
	return [4]any{c.Status, c.Reason, c.Message, c.ObservedGeneration}
}

// deleted passes deletions only, of the named object if name is set.
func deleted(name string) predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(e event.DeleteEvent) bool { return name == "" || e.Object.GetName() == name },
	}
}
