package nodeagent

import (
	"os"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

func TestGCBudget(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l := func(diffID string, size int64, age int, users int) layers.Layer {
		return layers.Layer{LayerMeta: layers.LayerMeta{DiffID: diffID, Size: size}, LastUsed: t0.Add(-time.Duration(age) * time.Hour), Users: users}
	}
	for _, tc := range []struct {
		name   string
		all    []layers.Layer
		budget int64
		keep   []string
		limit  int64
		over   bool
	}{
		{"under budget", []layers.Layer{l("a", 10, 1, 0)}, 10, nil, 10, false},
		{"oldest first until it fits", []layers.Layer{l("new", 10, 1, 0), l("old", 10, 3, 0), l("mid", 10, 2, 0)}, 15, nil, 15, true},
		{"in-use layers count but are never removed", []layers.Layer{l("used", 100, 9, 1), l("a", 10, 1, 0)}, 50, nil, 100, true},
		{"all in use", []layers.Layer{l("used", 100, 9, 1)}, 50, nil, 100, false},
		// Store.GC would remove "kept" next, so it is told to stop
		// before: at what remains once "old" is gone.
		{"stops before a kept layer", []layers.Layer{l("old", 10, 3, 0), l("kept", 20, 2, 0), l("new", 30, 1, 0)}, 5, []string{"kept"}, 50, true},
		{"a kept layer first: nothing to do", []layers.Layer{l("kept", 20, 3, 0), l("new", 30, 1, 0)}, 5, []string{"kept"}, 50, false},
		{"a kept layer after the budget is met does not matter", []layers.Layer{l("old", 40, 3, 0), l("kept", 20, 2, 0)}, 25, []string{"kept"}, 25, true},
		{"equal times keep the store's order", []layers.Layer{l("b", 10, 1, 0), l("kept", 10, 1, 0), l("c", 10, 1, 0)}, 0, []string{"kept"}, 20, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep := map[string]bool{}
			for _, k := range tc.keep {
				keep[k] = true
			}
			limit, over := gcBudget(tc.all, tc.budget, keep)
			if limit != tc.limit || over != tc.over {
				t.Errorf("gcBudget = %d, %t; want %d, %t", limit, over, tc.limit, tc.over)
			}
		})
	}
}

// TestCollectGarbage runs the collection against a real store: layers
// older than the kept ones go, kept and newer ones stay.
func TestCollectGarbage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: layers are extracted with their owners")
	}
	ctx := t.Context()
	reg := testimage.NewRegistry(t)
	store, err := layers.Open(ctx, layers.Options{Root: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pullOne := func(name string) string {
		t.Helper()
		l, err := testimage.Layer([]testimage.Entry{testimage.File(name, name+" content")}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		img, err := testimage.Image(l)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Pull(ctx, reg.Push(t, name+":v1", img), source.Options{Insecure: []string{reg.Host}}); err != nil {
			t.Fatal(err)
		}
		d, _ := l.DiffID()
		return d.String()
	}
	// Pulled in this order, so least recently used first.
	old, kept, newer := pullOne("old"), pullOne("kept"), pullOne("newer")

	res, err := collectGarbage(ctx, store, 1, map[string]bool{kept: true})
	if err != nil {
		t.Fatal(err)
	}
	var removed []string
	for _, l := range res.Removed {
		removed = append(removed, l.DiffID)
	}
	if !slices.Equal(removed, []string{old}) {
		t.Errorf("removed %v, want only the layer older than the kept one, %s", removed, old)
	}
	for d, want := range map[string]bool{old: false, kept: true, newer: true} {
		if got := store.HasLayer(mustHash(t, d)); got != want {
			t.Errorf("layer %s in the store: %t, want %t", d, got, want)
		}
	}

	// Without anything to keep, the budget rules.
	if _, err := collectGarbage(ctx, store, 1, nil); err != nil {
		t.Fatal(err)
	}
	if left, err := store.Layers(ctx); err != nil || len(left) != 0 {
		t.Errorf("after a collection to 1 byte with nothing kept, the store holds %d layers (%v)", len(left), err)
	}
}

func mustHash(t *testing.T, s string) v1.Hash {
	t.Helper()
	h, err := v1.NewHash(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
