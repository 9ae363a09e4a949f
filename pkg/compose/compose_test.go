package compose

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/source"
)

func layerSet(name string, entries ...v1alpha1.LayerSource) *v1alpha1.LayerSet {
	ls := &v1alpha1.LayerSet{Spec: v1alpha1.LayerSetSpec{Layers: entries}}
	ls.Name = name
	return ls
}

func image(ref string) v1alpha1.LayerSource   { return v1alpha1.LayerSource{Image: ref} }
func nested(name string) v1alpha1.LayerSource { return v1alpha1.LayerSource{LayerSet: name} }

// registry serves two images: base (2 layers) and app (1 layer).
func registry(t *testing.T) (base, app string, images ImageResolver) {
	t.Helper()
	reg := testimage.NewRegistry(t)
	mk := func(repo string, files ...string) string {
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
		return reg.Push(t, repo, img)
	}
	base = mk("base:v1", "b1", "b2")
	app = mk("app:v1", "a1")
	opts := source.Options{Insecure: []string{reg.Host}}
	return base, app, func(ctx context.Context, ref string) (*source.Image, error) {
		return source.Resolve(ctx, ref, opts)
	}
}

func TestResolveComposesNestedChains(t *testing.T) {
	base, app, images := registry(t)
	sets := map[string]*v1alpha1.LayerSet{
		"toolchain": layerSet("toolchain", image(base)),
		"app":       layerSet("app", nested("toolchain"), image(app)),
	}
	chain, err := Resolve(context.Background(), sets["app"], MapLookup(sets), images)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 3 {
		t.Fatalf("want 3 layers (2 from the nested toolchain, then 1), got %d", len(chain))
	}
	if chain[0].Entry != 0 || chain[1].Entry != 0 || chain[2].Entry != 1 {
		t.Errorf("entries = %d %d %d, want 0 0 1", chain[0].Entry, chain[1].Entry, chain[2].Entry)
	}
	if !strings.Contains(chain[2].Source, "@sha256:") {
		t.Errorf("layer source %q is not pinned to a digest", chain[2].Source)
	}
}

func TestResolveErrors(t *testing.T) {
	base, _, images := registry(t)
	many := make([]v1alpha1.LayerSource, 250)
	for i := range many {
		many[i] = image(base) // 2 layers each: 500, plus init = 501
	}
	sets := map[string]*v1alpha1.LayerSet{
		"a":       layerSet("a", nested("b")),
		"b":       layerSet("b", image(base), nested("c")),
		"c":       layerSet("c", nested("a")),
		"self":    layerSet("self", nested("self")),
		"orphan":  layerSet("orphan", nested("missing")),
		"many":    layerSet("many", many...),
		"both":    layerSet("both", v1alpha1.LayerSource{Image: base, LayerSet: "a"}),
		"noimage": layerSet("noimage", image("127.0.0.1:1/nothing:here")),
	}
	tests := []struct {
		name string
		want error
		msg  string
	}{
		{"a", ErrCycle, "a -> b -> c -> a"},
		{"self", ErrCycle, "self -> self"},
		{"orphan", ErrLayerSetNotFound, `"missing"`},
		{"many", ErrTooManyLayers, "limit is 500"},
		{"both", ErrInvalidSpec, "exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Resolve(context.Background(), sets[tt.name], MapLookup(sets), images)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("want %v mentioning %q, got %v", tt.want, tt.msg, err)
			}
		})
	}
}

func TestRenderInit(t *testing.T) {
	str := func(s string) *string { return &s }
	mode := int32(0o600)
	init := &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{
		{Path: "etc/motd", Content: str("hello\n")},
		{Path: "etc/pod", Mode: &mode, Template: str("{{.PodNamespace}}/{{.PodName}} {{.PodUID}} {{.ServiceAccount}} {{.NodeName}} {{.VolumeID}}")},
		{Path: "etc/cm", ConfigMapKeyRef: &v1alpha1.KeyReference{Namespace: "ns", Name: "cfg", Key: "k"}},
		{Path: "etc/secret", SecretKeyRef: &v1alpha1.KeyReference{Namespace: "ns", Name: "s", Key: "k"}},
	}}
	pod := PodInfo{PodName: "web-0", PodNamespace: "shop", PodUID: "u-1", ServiceAccount: "sa", NodeName: "n1", VolumeID: "v1"}
	keys := func(_ context.Context, kind string, ref v1alpha1.KeyReference) ([]byte, error) {
		return []byte(fmt.Sprintf("%s %s/%s[%s]", kind, ref.Namespace, ref.Name, ref.Key)), nil
	}
	files, err := RenderInit(context.Background(), init, pod, keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		path, data string
		mode       uint32
	}{
		{"etc/motd", "hello\n", 0o644},
		{"etc/pod", "shop/web-0 u-1 sa n1 v1", 0o600},
		{"etc/cm", "ConfigMap ns/cfg[k]", 0o644},
		{"etc/secret", "Secret ns/s[k]", 0o644},
	}
	for i, w := range want {
		if files[i].Path != w.path || string(files[i].Data) != w.data || uint32(files[i].Mode) != w.mode {
			t.Errorf("file %d = %s %q %o, want %s %q %o", i, files[i].Path, files[i].Data, files[i].Mode, w.path, w.data, w.mode)
		}
	}
}

func TestRenderInitErrors(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name string
		file v1alpha1.InitFile
		msg  string
	}{
		{"unknown field", v1alpha1.InitFile{Path: "x", Template: str("{{.Nope}}")}, "Nope"},
		{"bad syntax", v1alpha1.InitFile{Path: "x", Template: str("{{")}, "unclosed action"},
		{"huge output", v1alpha1.InitFile{Path: "x", Template: str(`{{range 2000}}{{printf "%1000s" ""}}{{end}}`)}, "output exceeds"},
		{"configmap in standalone", v1alpha1.InitFile{Path: "x", ConfigMapKeyRef: &v1alpha1.KeyReference{Namespace: "a", Name: "b", Key: "c"}}, "standalone"},
		{"no source", v1alpha1.InitFile{Path: "x"}, "no content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RenderInit(context.Background(), &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{tt.file}}, PodInfo{}, nil)
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("want ErrInvalidSpec mentioning %q, got %v", tt.msg, err)
			}
		})
	}
}

func TestParseLayerSet(t *testing.T) {
	good := `apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: tools}
spec:
  layers: [{image: "reg.example/tools:v1"}, {layerSet: base}]
  init: {files: [{path: etc/x, content: "y"}]}
`
	ls, err := ParseLayerSet([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if ls.Name != "tools" || len(ls.Spec.Layers) != 2 || ls.Spec.Layers[1].LayerSet != "base" || *ls.Spec.Init.Files[0].Content != "y" {
		t.Errorf("parsed %+v", ls)
	}
	for name, doc := range map[string]string{
		"typo":      strings.Replace(good, "layers:", "layer:", 1),
		"kind":      strings.Replace(good, "kind: LayerSet", "kind: Pod", 1),
		"no name":   strings.Replace(good, "{name: tools}", "{}", 1),
		"not yaml":  "{{{",
		"wrong api": strings.Replace(good, "layerset.io/v1alpha1", "v1", 1),
	} {
		if _, err := ParseLayerSet([]byte(doc)); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: want ErrInvalidSpec, got %v", name, err)
		}
	}
}

func FuzzParseLayerSet(f *testing.F) {
	f.Add([]byte("apiVersion: layerset.io/v1alpha1\nkind: LayerSet\nmetadata: {name: a}\nspec: {layers: [{image: x}]}\n"))
	f.Add([]byte("spec: {init: {files: [{path: a, template: '{{.PodName}}'}]}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ls, err := ParseLayerSet(data)
		if err == nil && ls.Name == "" {
			t.Fatal("accepted a LayerSet without a name")
		}
	})
}
