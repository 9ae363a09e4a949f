package catalog

import (
	"slices"
	"sync"
	"time"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
)

// chainCache remembers the chains a catalog resolved, so that every volume
// of a LayerSet does not walk its nested LayerSets and images again: for a
// chain of 100 layers that walk was a tenth of a warm publish. An entry
// is good while the definitions it was resolved from are the ones the
// catalog holds (their generation) and until the first resolution of its
// images expires, so it changes exactly when a lookup without it would.
type chainCache struct {
	mu      sync.Mutex
	entries map[string]cachedChain
}

type cachedChain struct {
	gen     uint64 // of the definitions
	ls      *v1alpha1.LayerSet
	chain   []compose.Layer
	expires time.Time
}

// get returns a copy of the LayerSet called name and its chain, resolved
// from the definitions of generation gen and good at now.
func (c *chainCache) get(name string, gen uint64, now time.Time) (*v1alpha1.LayerSet, []compose.Layer, bool) {
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if !ok || e.gen != gen || !now.Before(e.expires) {
		return nil, nil, false
	}
	// Copies: callers own what Resolve returns.
	return e.ls.DeepCopy(), slices.Clone(e.chain), true
}

// put remembers a resolution, and forgets those of older definitions.
func (c *chainCache) put(name string, e cachedChain) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cachedChain{}
	}
	if cur, ok := c.entries[name]; ok && cur.gen > e.gen {
		return // resolved from definitions read again since
	}
	for k, old := range c.entries {
		if old.gen < e.gen {
			delete(c.entries, k)
		}
	}
	c.entries[name] = e
}
