package nodeagent

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// Limits of the NodeCache schema.
const (
	maxReported = 4096 // status.layerSets
	maxMessage  = 1024 // status.layerSets[].message
)

// pullState is what the prefetcher knows about the pull of one LayerSet.
type pullState struct {
	ChainID string
	Pulling bool
	Err     string // the last attempt's failure for ChainID; "" if none
	// Progress is where the running pull stood when last sampled; zero
	// before the first sample and when no pull runs.
	Progress layers.ChainProgress
}

// view is what one reconcile sees.
type view struct {
	nodeLabels map[string]string
	layerSets  []v1alpha1.LayerSet
	stored     []layers.Layer
	// volumes are the chains (diffIDs, bottom first) of the store's
	// volumes, mounted or kept.
	volumes [][]string
	pulls   map[string]pullState
	budget  int64
}

// job asks the prefetcher to pull one LayerSet's chain.
type job struct {
	name    string
	chainID string
}

// selected returns the LayerSets whose spec.prefetch matches the node's
// labels. A selector that does not parse selects nothing; the controller
// reports it on the LayerSet.
func selected(all []v1alpha1.LayerSet, nodeLabels map[string]string) []*v1alpha1.LayerSet {
	var out []*v1alpha1.LayerSet
	for i := range all {
		ls := &all[i]
		if ls.Spec.Prefetch == nil || !ls.DeletionTimestamp.IsZero() {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(ls.Spec.Prefetch)
		if err == nil && sel.Matches(labels.Set(nodeLabels)) {
			out = append(out, ls)
		}
	}
	return out
}

// keepSet is every layer of the chains the node prefetches, by diffID.
// A chain whose status is not current yet is kept too: it is what volumes
// mount until the controller resolves the new one.
func keepSet(prefetched []*v1alpha1.LayerSet) map[string]bool {
	keep := map[string]bool{}
	for _, ls := range prefetched {
		for _, l := range ls.Status.Chain {
			keep[l.DiffID] = true
		}
	}
	return keep
}

// resolution reports whether ls's status holds the chain of its current
// generation, and if not, why, in words for a message.
func resolution(ls *v1alpha1.LayerSet) (bool, string) {
	c := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved)
	switch {
	case ls.Status.ObservedGeneration != ls.Generation || c == nil || c.ObservedGeneration != ls.Generation:
		return false, fmt.Sprintf("waiting for the controller to resolve generation %d", ls.Generation)
	case c.Status != metav1.ConditionTrue:
		return false, fmt.Sprintf("not resolved: %s: %s", c.Reason, c.Message)
	}
	return true, ""
}

func chainOf(ls *v1alpha1.LayerSet) []string {
	out := make([]string, len(ls.Status.Chain))
	for i, l := range ls.Status.Chain {
		out[i] = l.DiffID
	}
	return out
}

// plan computes the NodeCache status (without its update time) and the
// pulls to ask for. A LayerSet is reported when it selects the node for
// prefetch or when a volume in the store is composed of its current
// chain; it is pulled when it selects the node, is resolved, and the
// store lacks part of its chain.
func plan(v view) (v1alpha1.NodeCacheStatus, []job) {
	st := v1alpha1.NodeCacheStatus{LayerCount: int32(len(v.stored)), BudgetBytes: v.budget}
	have := make(map[string]bool, len(v.stored))
	for _, l := range v.stored {
		have[l.DiffID] = true
		st.Bytes += l.Size
	}
	prefetched := map[string]bool{}
	for _, ls := range selected(v.layerSets, v.nodeLabels) {
		prefetched[ls.Name] = true
	}
	inUse := map[string]bool{}
	for _, c := range v.volumes {
		inUse[strings.Join(c, " ")] = true
	}

	var jobs []job
	for i := range v.layerSets {
		ls := &v.layerSets[i]
		chain := chainOf(ls)
		used := len(chain) > 0 && inUse[strings.Join(chain, " ")]
		if !prefetched[ls.Name] && !used {
			continue
		}
		e := v1alpha1.NodeLayerSetStatus{Name: ls.Name, ChainID: ls.Status.ChainID}
		ok, why := resolution(ls)
		for _, d := range chain {
			if !have[d] {
				e.Missing++
			}
		}
		switch {
		case !ok:
			e.Message = why
		case e.Missing == 0:
			e.Ready = true
		case !prefetched[ls.Name]:
			e.Message = fmt.Sprintf("%d of %d layers are not in the cache", e.Missing, len(chain))
		default:
			jobs = append(jobs, job{name: ls.Name, chainID: ls.Status.ChainID})
			p := v.pulls[ls.Name]
			e.Message = pullMessage(p, ls.Status.ChainID, int(e.Missing), len(chain))
			if p.ChainID == ls.Status.ChainID && p.Pulling && p.Progress.Total > 0 {
				e.PulledBytes, e.TotalBytes = p.Progress.Done, p.Progress.Total
			}
		}
		e.Message = truncate(e.Message, maxMessage)
		st.LayerSets = append(st.LayerSets, e)
	}
	slices.SortFunc(st.LayerSets, func(a, b v1alpha1.NodeLayerSetStatus) int { return strings.Compare(a.Name, b.Name) })
	if len(st.LayerSets) > maxReported {
		st.LayerSets = st.LayerSets[:maxReported]
	}
	slices.SortStableFunc(jobs, func(a, b job) int { return strings.Compare(a.name, b.name) })
	return st, jobs
}

func pullMessage(p pullState, chainID string, missing, total int) string {
	switch {
	case p.ChainID == chainID && p.Pulling && p.Progress.Total > 0:
		return fmt.Sprintf("pulling %d of %d layers: %s of the chain here",
			missing, total, layers.BytesOf(p.Progress.Done, p.Progress.Total))
	case p.ChainID == chainID && p.Pulling:
		return fmt.Sprintf("pulling %d of %d layers", missing, total)
	case p.ChainID == chainID && p.Err != "":
		return fmt.Sprintf("%d of %d layers are not in the cache; the last pull failed: %s", missing, total, p.Err)
	}
	return fmt.Sprintf("%d of %d layers are not in the cache; waiting to pull them", missing, total)
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
