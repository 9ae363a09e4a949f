package assemble

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

// warmEnv is an Assembler over a real store and a folder of LayerSets.
type warmEnv struct {
	a       *Assembler
	store   *layers.Store
	lsDir   string
	image   string
	targets string
}

func newWarmEnv(t *testing.T) *warmEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts overlayfs")
	}
	ctx := context.Background()
	var ls []v1.Layer
	for i := range 3 {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(fmt.Sprintf("layer-%d", i), "x")}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := testimage.Image(ls...)
	if err != nil {
		t.Fatal(err)
	}
	reg := testimage.NewRegistry(t)
	e := &warmEnv{lsDir: t.TempDir(), image: reg.Push(t, "warm:v1", img), targets: t.TempDir()}
	e.writeLayerSet(t, "{{.PodName}}")
	if e.store, err = layers.Open(ctx, layers.Options{Root: t.TempDir(), NoSync: true}); err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.NewDir(ctx, e.lsDir, source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cat.Close() })
	e.a = New(Options{Store: e.store, Catalog: cat, NodeName: "n"})
	return e
}

func (e *warmEnv) writeLayerSet(t *testing.T, template string) {
	t.Helper()
	doc := fmt.Sprintf("apiVersion: layerset.io/v1alpha1\nkind: LayerSet\nmetadata: {name: warm}\nspec:\n  layers: [{image: %q}]\n  init: {files: [{path: etc/pod, template: %q}]}\n", e.image, template)
	tmp := filepath.Join(e.lsDir, ".warm.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(e.lsDir, "warm.yaml")); err != nil {
		t.Fatal(err)
	}
}

// mount mounts volume id for pod and returns its init file.
func (e *warmEnv) mount(t *testing.T, id, pod string) (string, error) {
	t.Helper()
	ctx := context.Background()
	target := filepath.Join(e.targets, id)
	_, err := e.a.Mount(ctx, Request{VolumeID: id, LayerSet: "warm", Pod: compose.PodInfo{PodName: pod}, Target: target, Ephemeral: true})
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { _ = e.store.Unmount(context.Background(), id, layers.RemoveUpper) })
	data, err := os.ReadFile(filepath.Join(target, "etc/pod"))
	return string(data), err
}

// Warm mounts reuse the resolved chain and parsed templates, yet an edit
// of the LayerSet is what the next volume gets.
func TestWarmMountsFollowLayerSetEdits(t *testing.T) {
	e := newWarmEnv(t)
	for i, pod := range []string{"p1", "p2"} {
		got, err := e.mount(t, fmt.Sprintf("v%d", i), pod)
		if err != nil || got != pod {
			t.Fatalf("volume %d: init file %q, %v; want %q", i, got, err, pod)
		}
	}
	e.writeLayerSet(t, "edited {{.PodName}}")
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		got, err := e.mount(t, fmt.Sprintf("e%d", i), "p3")
		if err != nil {
			t.Fatal(err)
		}
		if got == "edited p3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edited template never reached a volume: %q", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Layers another process collects are not mounted from memory: the mount
// fails with ErrLayerMissing, and the next one pulls them again.
func TestWarmMountAfterLayersCollected(t *testing.T) {
	e := newWarmEnv(t)
	ctx := context.Background()
	if _, err := e.mount(t, "a", "p"); err != nil {
		t.Fatal(err)
	}
	if err := e.store.Unmount(ctx, "a", layers.RemoveUpper); err != nil {
		t.Fatal(err)
	}
	other, err := layers.Open(ctx, layers.Options{Root: e.store.Root(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := other.GC(ctx, 0, nil); err != nil || len(res.Removed) != 3 {
		t.Fatalf("GC by another process: %d layers removed, %v", len(res.Removed), err)
	}
	if _, err := e.mount(t, "b", "p"); !errors.Is(err, layers.ErrLayerMissing) {
		t.Fatalf("mount after the layers were collected: %v, want ErrLayerMissing", err)
	}
	if err := e.store.Unmount(ctx, "b", layers.RemoveUpper); err != nil && !errors.Is(err, layers.ErrVolumeNotFound) {
		t.Fatal(err)
	}
	if got, err := e.mount(t, "c", "p"); err != nil || got != "p" {
		t.Fatalf("mount after that: %q, %v; want the layers pulled again", got, err)
	}
}
