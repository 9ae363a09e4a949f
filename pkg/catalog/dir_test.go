package catalog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// testRegistry serves base:v1 (two layers) and app:v1 (one layer) and
// counts manifest requests.
type testRegistry struct {
	*testimage.Registry
	manifests atomic.Int64
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	r.Registry = testimage.NewRegistry(t, testimage.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if strings.Contains(req.URL.Path, "/manifests/") && req.Method != http.MethodPut {
				r.manifests.Add(1)
			}
			next.ServeHTTP(w, req)
		})
	}))
	push := func(repo string, files ...string) {
		var ls []v1.Layer
		for _, f := range files {
			l, err := testimage.Layer([]testimage.Entry{testimage.File(f, f)}, testimage.Gzip)
			if err != nil {
				t.Fatal(err)
			}
			ls = append(ls, l)
		}
		img, err := testimage.Image(ls...)
		if err != nil {
			t.Fatal(err)
		}
		r.Push(t, repo, img)
	}
	push("base:v1", "b1", "b2")
	push("app:v1", "a1")
	r.manifests.Store(0)
	return r
}

func layerSetDoc(name string, entries ...string) string {
	return fmt.Sprintf("apiVersion: layerset.io/v1alpha1\nkind: LayerSet\nmetadata: {name: %s}\nspec:\n  layers: [%s]\n",
		name, strings.Join(entries, ", "))
}

func writeDoc(t *testing.T, dir, file, doc string) {
	t.Helper()
	// Written beside and renamed, as editors and ConfigMap updates do, so
	// a reader never sees half a file.
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, file)); err != nil {
		t.Fatal(err)
	}
}

func newTestDir(t *testing.T, reg *testRegistry, docs map[string]string) (*Dir, string) {
	t.Helper()
	dir := t.TempDir()
	for file, doc := range docs {
		writeDoc(t, dir, file, doc)
	}
	d, err := NewDir(context.Background(), dir, source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d, dir
}

func TestDirResolve(t *testing.T) {
	reg := newTestRegistry(t)
	img := func(repo string) string { return fmt.Sprintf("{image: %q}", reg.Host+"/"+repo) }
	d, _ := newTestDir(t, reg, map[string]string{
		"base.yaml":   layerSetDoc("base", img("base:v1")),
		"app.yml":     layerSetDoc("app", "{layerSet: base}", img("app:v1")),
		"loop-a.yaml": layerSetDoc("loop-a", "{layerSet: loop-b}"),
		"loop-b.yaml": layerSetDoc("loop-b", "{layerSet: loop-a}"),
		"gone.yaml":   layerSetDoc("gone", img("nothing:here")),
		"orphan.yaml": layerSetDoc("orphan", "{layerSet: nobody}"),
		"notes.txt":   "not a LayerSet",
	})
	ctx := context.Background()
	ls, chain, err := d.Resolve(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if ls.Name != "app" || len(chain) != 3 || chain[2].Entry != 1 {
		t.Errorf("app resolved to %s with %d layers", ls.Name, len(chain))
	}
	ls.Spec.Layers = nil // the caller's copy
	if again, _, err := d.Resolve(ctx, "app"); err != nil || len(again.Spec.Layers) != 2 {
		t.Errorf("a caller changing the returned LayerSet changed the catalog: %v", err)
	}

	tests := []struct {
		name string
		want error
		msg  string
	}{
		{"missing", compose.ErrLayerSetNotFound, `"missing"`},
		{"orphan", compose.ErrLayerSetNotFound, `"nobody"`},
		{"loop-a", compose.ErrCycle, "loop-a -> loop-b -> loop-a"},
		{"gone", ErrNotReady, `LayerSet "gone"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := d.Resolve(ctx, tt.name)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want %v mentioning %s", err, tt.want, tt.msg)
			}
		})
	}
	ctx, cancel := context.WithCancel(ctx)
	cancel()
	d.images.now = func() time.Time { return time.Now().Add(time.Hour) } // nothing cached
	if _, _, err := d.Resolve(ctx, "app"); !errors.Is(err, context.Canceled) || errors.Is(err, ErrNotReady) {
		t.Errorf("cancelled resolve: %v, want context.Canceled and not ErrNotReady", err)
	}
}

// Without a watch every lookup reads the folder: edits are seen at once.
func TestDirRereadsWithoutWatch(t *testing.T) {
	reg := newTestRegistry(t)
	d, dir := newTestDir(t, reg, map[string]string{"base.yaml": layerSetDoc("base", fmt.Sprintf("{image: %q}", reg.Host+"/base:v1"))})
	if err := d.Close(); err != nil { // stops the watch
		t.Fatal(err)
	}
	d.mu.Lock()
	watching := d.watching
	d.mu.Unlock()
	if watching {
		t.Fatal("still watching after Close")
	}
	ctx := context.Background()
	writeDoc(t, dir, "app.yaml", layerSetDoc("app", "{layerSet: base}"))
	if _, chain, err := d.Resolve(ctx, "app"); err != nil || len(chain) != 2 {
		t.Fatalf("new LayerSet: %d layers, %v", len(chain), err)
	}

	// A broken edit keeps what was read before and says why new names
	// are not found.
	writeDoc(t, dir, "broken.yaml", "apiVersion: layerset.io/v1alpha1\nkind: LayerSet\nmetadata: {name: broken}\nspec: {layer: []}\n")
	if _, _, err := d.Resolve(ctx, "app"); err != nil {
		t.Errorf("a broken file beside it made app unavailable: %v", err)
	}
	_, _, err := d.Resolve(ctx, "broken")
	if !errors.Is(err, compose.ErrLayerSetNotFound) || !errors.Is(err, compose.ErrInvalidSpec) || !strings.Contains(err.Error(), "broken.yaml") {
		t.Errorf("lookup while the folder is broken: %v, want not found with the parse error naming broken.yaml", err)
	}
	if err := os.Remove(filepath.Join(dir, "broken.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Resolve(ctx, "broken"); err == nil || strings.Contains(err.Error(), "last read failed") {
		t.Errorf("after the fix: %v, want a plain not found", err)
	}
}

// With the watch, an edit is picked up without reading at every lookup.
func TestDirWatch(t *testing.T) {
	reg := newTestRegistry(t)
	d, dir := newTestDir(t, reg, map[string]string{"base.yaml": layerSetDoc("base", fmt.Sprintf("{image: %q}", reg.Host+"/base:v1"))})
	d.mu.Lock()
	watching := d.watching
	d.mu.Unlock()
	if !watching {
		t.Skip("fsnotify cannot watch here")
	}
	ctx := context.Background()
	if _, _, err := d.Resolve(ctx, "app"); !errors.Is(err, compose.ErrLayerSetNotFound) {
		t.Fatalf("before the edit: %v", err)
	}
	writeDoc(t, dir, "app.yaml", layerSetDoc("app", "{layerSet: base}"))
	// The event arrives asynchronously; wait for its outcome.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err := d.Resolve(ctx, "app")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("edit never seen: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestImageCache(t *testing.T) {
	reg := newTestRegistry(t)
	d, _ := newTestDir(t, reg, map[string]string{
		"base.yaml": layerSetDoc("base", fmt.Sprintf("{image: %q}", reg.Host+"/base:v1")),
		"twice.yaml": layerSetDoc("twice", fmt.Sprintf("{image: %q}", reg.Host+"/base:v1"),
			fmt.Sprintf("{image: %q}", reg.Host+"/base:v1")),
	})
	now := time.Now()
	d.images.now = func() time.Time { return now }
	ctx := context.Background()
	for _, name := range []string{"base", "twice", "base"} {
		if _, _, err := d.Resolve(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	first := reg.manifests.Load()
	if first == 0 {
		t.Fatal("no manifest requests counted; the test cannot see caching")
	}
	now = now.Add(imageTTL - time.Second)
	if _, _, err := d.Resolve(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	if got := reg.manifests.Load(); got != first {
		t.Errorf("within the TTL the image was resolved again: %d manifest requests, then %d", first, got)
	}
	now = now.Add(2 * time.Second)
	if _, _, err := d.Resolve(ctx, "base"); err != nil {
		t.Fatal(err)
	}
	if got := reg.manifests.Load(); got != 2*first {
		t.Errorf("after the TTL: %d manifest requests, want %d", got, 2*first)
	}
}

func TestNewDirErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		if _, err := NewDir(context.Background(), dir, source.Options{}); err == nil {
			t.Errorf("NewDir(%s) succeeded", dir)
		}
	}
}
