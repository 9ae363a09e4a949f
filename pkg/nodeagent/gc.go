package nodeagent

import (
	"context"
	"sort"

	"github.com/layerset/layerset-csi/pkg/layers"
)

// collectGarbage brings the store under budget without removing a layer
// in keep (diffIDs). It returns what it removed.
//
// Store.GC removes unused layers least recently used first until the store
// fits and cannot be told to spare any, so the budget it is given is
// raised (gcBudget) to where it would stop just before the first layer to
// keep. Layers used less recently than every kept one go first; a newer
// unkept layer stays until the store can skip kept ones.
func collectGarbage(ctx context.Context, s *layers.Store, budget int64, keep map[string]bool) (layers.GCResult, error) {
	all, err := s.Layers(ctx)
	if err != nil {
		return layers.GCResult{}, err
	}
	limit, over := gcBudget(all, budget, keep)
	if !over {
		return layers.GCResult{}, nil
	}
	return s.GC(ctx, limit)
}

// gcBudget returns the budget under which Store.GC, given the store's
// layers all, removes the most it can without reaching a layer in keep,
// and whether it has anything to remove at all. It follows Store.GC's
// order: unused layers, least recently used first, stable.
func gcBudget(all []layers.Layer, budget int64, keep map[string]bool) (int64, bool) {
	var total int64
	var unused []layers.Layer
	for _, l := range all {
		total += l.Size
		if l.Users == 0 {
			unused = append(unused, l)
		}
	}
	sort.SliceStable(unused, func(i, j int) bool { return unused[i].LastUsed.Before(unused[j].LastUsed) })
	limit := total
	for _, l := range unused {
		if limit <= budget || keep[l.DiffID] {
			break
		}
		limit -= l.Size
	}
	return max(limit, budget), limit < total
}
