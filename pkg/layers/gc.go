package layers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/klog/v2"
)

// GCResult says what a garbage collection did.
type GCResult struct {
	Removed    []Layer
	FreedBytes int64
	// KeptBytes is what the store holds afterwards; it can stay above the
	// budget when layers in use need more.
	KeptBytes int64
}

// layerUsers counts, by short id, the volumes whose lower chain names each
// layer. Volume directories exist while a volume is mounted or keeps a
// persistent upper, so this is rebuilt from disk after any restart.
func (s *Store) layerUsers() (map[string]int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	users := map[string]int{}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, volumePrefix) || strings.HasSuffix(name, initSuffix) {
			continue
		}
		b, err := os.ReadFile(s.path(name, lowerName))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), ":") {
			if id := strings.TrimPrefix(l, linkDir+"/"); id != l {
				users[id]++
			}
		}
	}
	return users, nil
}

// GC removes layers no volume uses, least recently used first, until the
// store holds at most maxBytes. maxBytes 0 removes every unused layer.
// Layers for which spare returns true are kept as if in use (a node keeps
// what it was asked to prefetch); spare may be nil.
func (s *Store) GC(ctx context.Context, maxBytes int64, spare func(Layer) bool) (GCResult, error) {
	var res GCResult
	unlock, err := s.lock(exclusive)
	if err != nil {
		return res, err
	}
	defer unlock()
	users, err := s.layerUsers()
	if err != nil {
		return res, err
	}
	all, err := s.layers(ctx, users)
	if err != nil {
		return res, err
	}
	for _, l := range all {
		res.KeptBytes += l.Size
	}
	victims := gcVictims(all, res.KeptBytes, maxBytes, spare)
	for _, l := range victims {
		if err := s.removeAll(ctx, l.Dir); err != nil {
			return res, fmt.Errorf("remove layer %s: %w", l.DiffID, err)
		}
		if err := os.Remove(s.path(linkDir, l.LinkID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// The layer is gone; only its short link is left, which repair drops.
			klog.FromContext(ctx).Error(err, "Leaving a removed layer's short link for the next start", "diffID", l.DiffID, "id", l.LinkID)
		}
		s.links.Delete(filepath.Base(l.Dir))
		res.Removed = append(res.Removed, l)
		res.FreedBytes += l.Size
		res.KeptBytes -= l.Size
		klog.FromContext(ctx).V(2).Info("Removed unused layer", "diffID", l.DiffID, "bytes", l.Size, "dir", filepath.Base(l.Dir))
	}
	return res, nil
}

// gcVictims picks unused, unspared layers, least recently used first,
// until total fits in budget. It is pure so the policy can be tested on
// its own.
func gcVictims(layers []Layer, total, budget int64, spare func(Layer) bool) []Layer {
	var unused []Layer
	for _, l := range layers {
		if l.Users == 0 && (spare == nil || !spare(l)) {
			unused = append(unused, l)
		}
	}
	sort.SliceStable(unused, func(i, j int) bool { return unused[i].LastUsed.Before(unused[j].LastUsed) })
	var out []Layer
	for _, l := range unused {
		if total <= budget {
			break
		}
		out = append(out, l)
		total -= l.Size
	}
	return out
}
