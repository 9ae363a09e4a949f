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

// TestCollectGarbage runs the collection against a real store: unused
// layers go, least recently used first, except the kept ones.
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

	now := time.Now()
	res, err := collectGarbage(ctx, store, 1, map[string]bool{kept: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	var removed []string
	for _, l := range res.Removed {
		removed = append(removed, l.DiffID)
	}
	if !slices.Equal(removed, []string{old, newer}) {
		t.Errorf("removed %v, want every unkept layer, oldest first: %s, %s", removed, old, newer)
	}
	for d, want := range map[string]bool{old: false, kept: true, newer: false} {
		if got := store.HasLayer(mustHash(t, d)); got != want {
			t.Errorf("layer %s in the store: %t, want %t", d, got, want)
		}
	}

	// Layers used after notAfter are spared.
	if res, err := collectGarbage(ctx, store, 1, nil, now.Add(-time.Hour)); err != nil || len(res.Removed) != 0 {
		t.Errorf("collecting layers younger than an hour removed %d layers (%v), want none", len(res.Removed), err)
	}
	// Without anything to keep, the budget rules.
	if _, err := collectGarbage(ctx, store, 1, nil, now); err != nil {
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
