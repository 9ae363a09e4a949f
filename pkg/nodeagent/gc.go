package nodeagent

import (
	"context"
	"time"

	"github.com/layerset/layerset-csi/pkg/layers"
)

// collectGarbage brings the store under budget without removing a layer
// in keep (diffIDs) or one used after notAfter. It returns what it
// removed. Recent layers are spared so that a volume being composed does
// not lose the layers it just imported before it mounts them.
func collectGarbage(ctx context.Context, s *layers.Store, budget int64, keep map[string]bool, notAfter time.Time) (layers.GCResult, error) {
	return s.GC(ctx, budget, func(l layers.Layer) bool { return keep[l.DiffID] || l.LastUsed.After(notAfter) })
}
