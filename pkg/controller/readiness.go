package controller

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// cacheState sums up the NodeCaches for ls, whose status st holds the
// resolved chain (or none).
func (r *reconciler) cacheState(ctx context.Context, ls *v1alpha1.LayerSet, st *v1alpha1.LayerSetStatus) (v1alpha1.NodeCacheState, error) {
	caches := map[string]*v1alpha1.NodeCache{}
	var wanted []string
	if ls.Spec.Prefetch != nil {
		sel, err := metav1.LabelSelectorAsSelector(ls.Spec.Prefetch)
		if err != nil {
			return v1alpha1.NodeCacheState{}, nil // reported by resolve as InvalidSpec
		}
		var nodes metav1.PartialObjectMetadataList
		nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
		if err := r.client.List(ctx, &nodes, client.MatchingLabelsSelector{Selector: sel}); err != nil {
			return v1alpha1.NodeCacheState{}, fmt.Errorf("listing nodes: %w", err)
		}
		for _, n := range nodes.Items {
			wanted = append(wanted, n.Name)
			var nc v1alpha1.NodeCache
			err := r.client.Get(ctx, client.ObjectKey{Name: n.Name}, &nc)
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return v1alpha1.NodeCacheState{}, fmt.Errorf("reading NodeCache %q: %w", n.Name, err)
			default:
				caches[n.Name] = &nc
			}
		}
	} else {
		var list v1alpha1.NodeCacheList
		if err := r.client.List(ctx, &list, client.MatchingFields{indexNodeCacheLayerSets: ls.Name}); err != nil {
			return v1alpha1.NodeCacheState{}, fmt.Errorf("listing NodeCaches: %w", err)
		}
		for i := range list.Items {
			nc := &list.Items[i]
			wanted = append(wanted, nc.Name)
			caches[nc.Name] = nc
		}
	}
	return summarize(ls.Name, st, wanted, caches), nil
}

// summarize counts the wanted nodes whose cache holds every layer of the
// chain in st. A node counts only if it checked the current chain (its
// chainID matches); an empty chain is held by every node.
func summarize(name string, st *v1alpha1.LayerSetStatus, wanted []string, caches map[string]*v1alpha1.NodeCache) v1alpha1.NodeCacheState {
	out := v1alpha1.NodeCacheState{Wanted: int32(len(wanted))}
	resolved := isResolved(st)
	for _, node := range wanted {
		ok := resolved && len(st.Chain) == 0
		if nc := caches[node]; resolved && !ok && nc != nil {
			i := slices.IndexFunc(nc.Status.LayerSets, func(e v1alpha1.NodeLayerSetStatus) bool { return e.Name == name })
			ok = i >= 0 && nc.Status.LayerSets[i].Ready && nc.Status.LayerSets[i].ChainID == st.ChainID
		}
		if ok {
			out.Ready++
			out.Nodes = append(out.Nodes, node)
		}
	}
	slices.Sort(out.Nodes)
	if len(out.Nodes) > v1alpha1.MaxListedNodes {
		out.Nodes = out.Nodes[:v1alpha1.MaxListedNodes]
	}
	return out
}
