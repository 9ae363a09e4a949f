package catalog

import (
	"context"
	"fmt"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
)

// A resolved chain is used again, without walking the LayerSets or asking
// the image cache, and callers get copies they may change.
func TestDirKeepsChains(t *testing.T) {
	reg := newTestRegistry(t)
	img := func(repo string) string { return fmt.Sprintf("{image: %q}", reg.Host+"/"+repo) }
	d, _ := newTestDir(t, reg, map[string]string{
		"base.yaml": layerSetDoc("base", img("base:v1")),
		"app.yaml":  layerSetDoc("app", "{layerSet: base}", img("app:v1")),
	})
	ctx := context.Background()
	_, first, err := d.Resolve(ctx, "app")
	if err != nil || len(first) != 3 {
		t.Fatalf("app: %d layers, %v", len(first), err)
	}
	want := first[0].DiffID
	first[0].DiffID = v1.Hash{Algorithm: "sha256", Hex: "changed by the caller"}
	d.images.mu.Lock()
	clear(d.images.entries) // only the chain cache can answer now
	d.images.mu.Unlock()
	before := reg.manifests.Load()
	ls, again, err := d.Resolve(ctx, "app")
	if err != nil || len(again) != 3 || again[0].DiffID != want {
		t.Fatalf("again: %d layers, first %v, %v; want the chain as first resolved", len(again), again[0].DiffID, err)
	}
	if got := reg.manifests.Load(); got != before {
		t.Errorf("a kept chain asked the registry again: %d manifest requests, then %d", before, got)
	}
	ls.Spec.Layers = nil
	if ls, _, err := d.Resolve(ctx, "app"); err != nil || len(ls.Spec.Layers) != 2 {
		t.Errorf("a caller changing the returned LayerSet changed the kept one: %v", err)
	}
}

// An edited LayerSet, or one it includes, is resolved anew.
func TestDirChainsFollowEdits(t *testing.T) {
	reg := newTestRegistry(t)
	img := func(repo string) string { return fmt.Sprintf("{image: %q}", reg.Host+"/"+repo) }
	d, dir := newTestDir(t, reg, map[string]string{
		"base.yaml": layerSetDoc("base", img("base:v1")),
		"app.yaml":  layerSetDoc("app", "{layerSet: base}"),
	})
	ctx := context.Background()
	if _, chain, err := d.Resolve(ctx, "app"); err != nil || len(chain) != 2 {
		t.Fatalf("app: %d layers, %v", len(chain), err)
	}
	// The nested LayerSet changes, not the one asked for.
	writeDoc(t, dir, "base.yaml", layerSetDoc("base", img("base:v1"), img("app:v1")))
	waitFor(t, func() (bool, error) {
		_, chain, err := d.Resolve(ctx, "app")
		return len(chain) == 3, err
	})
	// And without a watch, where every lookup reads the folder.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	writeDoc(t, dir, "base.yaml", layerSetDoc("base", img("app:v1")))
	if _, chain, err := d.Resolve(ctx, "app"); err != nil || len(chain) != 1 {
		t.Errorf("unwatched edit: %d layers, %v; want 1", len(chain), err)
	}
}

// A tag pushed anew is seen when the image's resolution expires, with the
// chain built on it, and not before.
func TestDirChainsExpireWithImages(t *testing.T) {
	reg := newTestRegistry(t)
	d, _ := newTestDir(t, reg, map[string]string{
		"app.yaml": layerSetDoc("app", fmt.Sprintf("{image: %q}", reg.Host+"/app:v1")),
	})
	now := time.Now()
	d.images.now = func() time.Time { return now }
	ctx := context.Background()
	_, old, err := d.Resolve(ctx, "app")
	if err != nil || len(old) != 1 {
		t.Fatalf("app: %d layers, %v", len(old), err)
	}
	var layers []v1.Layer
	for _, f := range []string{"n1", "n2"} {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(f, f)}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	pushed, err := testimage.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	reg.Push(t, "app:v1", pushed)
	now = now.Add(imageTTL - time.Second)
	if _, chain, err := d.Resolve(ctx, "app"); err != nil || len(chain) != 1 {
		t.Errorf("within the TTL: %d layers, %v; want the chain resolved before", len(chain), err)
	}
	now = now.Add(2 * time.Second)
	if _, chain, err := d.Resolve(ctx, "app"); err != nil || len(chain) != 2 {
		t.Errorf("after the TTL: %d layers, %v; want the pushed image's 2", len(chain), err)
	}
}

// waitFor polls cond until it holds, for events that arrive on their own.
func waitFor(t *testing.T, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition never held: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
