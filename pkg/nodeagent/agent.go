package nodeagent

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/assemble"
)

// agent reconciles the node's layer cache: it asks for the pulls the
// node's prefetch LayerSets need, collects garbage, and writes the
// NodeCache. Its one key is the node's name.
type agent struct {
	opts     Options
	client   client.Client // cached: this Node, this NodeCache, LayerSets
	api      client.Reader // uncached
	prefetch *prefetcher
	assemble *assemble.Assembler // pulls the LayerSets to prefetch
	now      func() time.Time

	// changed wakes the reconciler when the store's directory changed or a
	// pull ended; buffered 1, since one reconcile covers any number.
	changed chan struct{}
	// importMu keeps garbage collection (write) from running during the
	// prefetcher's imports (read): the budget collectGarbage computes is
	// only right for the layers it saw.
	importMu sync.RWMutex
}

func (a *agent) key() reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: a.opts.NodeName}}
}

func (a *agent) poke() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// wakeOnChange is a source that queues the node whenever poke is called.
func (a *agent) wakeOnChange(ctx context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.changed:
				q.Add(a.key())
			}
		}
	}()
	return nil
}

// Reconcile prefetches, collects and reports for the node.
func (a *agent) Reconcile(ctx context.Context, _ reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	again := reconcile.Result{RequeueAfter: a.opts.ResyncInterval}
	var node corev1.Node
	if err := a.client.Get(ctx, client.ObjectKey{Name: a.opts.NodeName}, &node); err != nil {
		if apierrors.IsNotFound(err) {
			logger.Info("Node object not found: nothing to prefetch, no NodeCache to write", "node", a.opts.NodeName)
			a.prefetch.want(nil)
			return again, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading Node %q: %w", a.opts.NodeName, err)
	}
	var list v1alpha1.LayerSetList
	if err := a.client.List(ctx, &list); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing LayerSets: %w", err)
	}
	if a.opts.CacheMaxBytes > 0 {
		// A failed collection must not stop the report, which says how
		// full the cache is.
		a.collect(ctx, keepSet(selected(list.Items, node.Labels)))
	}
	stored, err := a.opts.Store.Layers(ctx)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("listing the layer store: %w", err)
	}
	vols, err := a.opts.Store.Volumes()
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("listing the store's volumes: %w", err)
	}
	chains := make([][]string, len(vols))
	for i, v := range vols {
		chains[i] = v.Layers
	}
	st, jobs := plan(view{
		nodeLabels: node.Labels,
		layerSets:  list.Items,
		stored:     stored,
		volumes:    chains,
		pulls:      a.prefetch.states(),
		budget:     a.opts.CacheMaxBytes,
	})
	a.prefetch.want(jobs)
	if err := a.report(ctx, &node, st); err != nil {
		return reconcile.Result{}, err
	}
	return again, nil
}

// pull imports the chain of one LayerSet; the prefetcher calls it.
func (a *agent) pull(ctx context.Context, name string) error {
	a.importMu.RLock()
	defer a.importMu.RUnlock()
	_, _, err := a.assemble.Pull(ctx, name)
	return err
}

// collect keeps the store under its budget, sparing keep. While a
// prefetch imports it does nothing: the import's end wakes the reconciler
// again.
func (a *agent) collect(ctx context.Context, keep map[string]bool) {
	logger := log.FromContext(ctx)
	if !a.importMu.TryLock() {
		return
	}
	defer a.importMu.Unlock()
	res, err := collectGarbage(ctx, a.opts.Store, a.opts.CacheMaxBytes, keep, a.now().Add(-a.opts.MinLayerAge))
	if err != nil {
		logger.Error(err, "Cannot collect unused layers", "budgetBytes", a.opts.CacheMaxBytes)
		return
	}
	if len(res.Removed) > 0 {
		logger.Info("Removed unused layers", "count", len(res.Removed), "freedBytes", res.FreedBytes,
			"keptBytes", res.KeptBytes, "budgetBytes", a.opts.CacheMaxBytes)
	}
}

// report writes st to the node's NodeCache, creating it owned by the Node,
// and writes nothing when the status already says st.
func (a *agent) report(ctx context.Context, node *corev1.Node, st v1alpha1.NodeCacheStatus) error {
	key := client.ObjectKey{Name: node.Name}
	var nc v1alpha1.NodeCache
	err := a.client.Get(ctx, key, &nc)
	switch {
	case apierrors.IsNotFound(err):
		nc = *v1alpha1.NewNodeCache(node.Name, node.UID)
		if err := a.client.Create(ctx, &nc); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating NodeCache %q: %w", node.Name, err)
			}
			if err := a.api.Get(ctx, key, &nc); err != nil {
				return fmt.Errorf("reading NodeCache %q: %w", node.Name, err)
			}
		}
	case err != nil:
		return fmt.Errorf("reading NodeCache %q: %w", node.Name, err)
	}
	if refs := ownerRefs(nc.OwnerReferences, node); refs != nil {
		// A Node deleted and created again under the same name: adopt the
		// NodeCache before the garbage collector removes it.
		base := nc.DeepCopy()
		nc.OwnerReferences = refs
		if err := a.client.Patch(ctx, &nc, client.MergeFrom(base)); err != nil {
			return fmt.Errorf("setting the owner of NodeCache %q: %w", node.Name, err)
		}
	}
	if sameStatus(nc.Status, st) {
		return nil
	}
	// The cache may not have seen the last write yet; ask the API server
	// before writing the same again.
	if err := a.api.Get(ctx, key, &nc); err != nil {
		return fmt.Errorf("reading NodeCache %q: %w", node.Name, err)
	}
	if sameStatus(nc.Status, st) {
		return nil
	}
	base := nc.DeepCopy()
	st.UpdateTime = &metav1.Time{Time: a.now()}
	nc.Status = st
	if err := a.client.Status().Patch(ctx, &nc, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("writing the status of NodeCache %q: %w", node.Name, err)
	}
	return nil
}

// ownerRefs returns refs with the Node owner pointing at node, or nil if
// it already does.
func ownerRefs(refs []metav1.OwnerReference, node *corev1.Node) []metav1.OwnerReference {
	want := v1alpha1.NewNodeCache(node.Name, node.UID).OwnerReferences[0]
	isNode := func(r metav1.OwnerReference) bool { return r.Kind == "Node" && r.APIVersion == "v1" }
	if slices.ContainsFunc(refs, func(r metav1.OwnerReference) bool { return isNode(r) && r.UID == node.UID }) {
		return nil
	}
	return append(slices.DeleteFunc(slices.Clone(refs), isNode), want)
}

// sameStatus compares two statuses but for their update times.
func sameStatus(a, b v1alpha1.NodeCacheStatus) bool {
	a.UpdateTime, b.UpdateTime = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}
