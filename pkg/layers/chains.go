package layers

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxCachedChains bounds the chains a store remembers: a node mounts the
// chains of its LayerSets, a handful; past the bound it starts over.
const maxCachedChains = 64

// chainCache remembers, per chain, what a mount derives from the chain
// alone: the layers' short links (for the lower files and mount(2)), their
// directories (for fsconfig) and their digests as volume records spell
// them. Deriving them again, layer by layer, was a tenth of a warm mount
// of 100 layers. Links are what can change: a layer removed and imported
// again gets a new one. So an entry holds only while nothing that removes
// layers has run since it was made: a holder of the exclusive store lock
// (garbage collection, repair) or a mount that found a layer gone, each of
// which bumps the epoch. Another process's collection is noticed by the
// mount it breaks, as the links cache notices it (see knownLayer).
type chainCache struct {
	seed maphash.Seed

	mu      sync.Mutex
	epoch   uint64
	entries map[uint64]*chainEntry // by fingerprint of the chain
}

// chainEntry is what mounts of one chain share; never changed once made.
type chainEntry struct {
	epoch  uint64
	layers []v1.Hash // bottom first
	// links are the l/ paths, uppermost first, as the lower file lists
	// them; joined is that list with ':'.
	links  []string
	joined string
	dirs   []string // the layers' diff directories, uppermost first
	names  []string // "sha256:<hex>", bottom first, as Volume.Layers
}

func newChainCache() chainCache { return chainCache{seed: maphash.MakeSeed()} }

func (c *chainCache) fingerprint(layers []v1.Hash) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, l := range layers {
		h.WriteString(l.Algorithm)
		h.WriteByte(0)
		h.WriteString(l.Hex)
		h.WriteByte(0)
	}
	return h.Sum64()
}

// get returns the entry of layers made in the current epoch, or nil.
func (c *chainCache) get(layers []v1.Hash) *chainEntry {
	key := c.fingerprint(layers)
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || e.epoch != c.epoch || !slices.Equal(e.layers, layers) {
		return nil
	}
	return e
}

// current is the epoch an entry made now belongs to.
func (c *chainCache) current() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// put remembers e, unless the epoch moved on while it was made.
func (c *chainCache) put(e *chainEntry) {
	key := c.fingerprint(e.layers)
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.epoch != c.epoch {
		return
	}
	if c.entries == nil || len(c.entries) >= maxCachedChains {
		c.entries = map[uint64]*chainEntry{}
	}
	c.entries[key] = e
}

// invalidate forgets every entry: layers may have been removed.
func (c *chainCache) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	c.entries = nil
}

// chainOf returns what mounting layers derives from them, from memory
// when the chain was mounted before; an error wraps ErrLayerMissing for a
// layer the store does not have.
func (s *Store) chainOf(layers []v1.Hash) (*chainEntry, error) {
	if e := s.chains.get(layers); e != nil {
		return e, nil
	}
	epoch := s.chains.current()
	links, err := s.chainLinks(layers)
	if err != nil {
		return nil, err
	}
	e := &chainEntry{
		epoch:  epoch,
		layers: slices.Clone(layers),
		links:  links,
		joined: strings.Join(links, ":"),
		dirs:   make([]string, len(layers)),
		names:  make([]string, len(layers)),
	}
	for i, l := range layers {
		e.dirs[len(layers)-1-i] = l.Hex + "/" + diffName // chainLinks checked it
		e.names[i] = l.Algorithm + ":" + l.Hex           // l.String(), without its Sprintf
	}
	s.chains.put(e)
	return e, nil
}

// lowerOf is the content of a volume's lower file: its init layer's link,
// then the chain's.
func (e *chainEntry) lowerOf(initID string) string {
	if e.joined == "" {
		return linkDir + "/" + initID
	}
	return linkDir + "/" + initID + ":" + e.joined
}
