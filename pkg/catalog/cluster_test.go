package catalog_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/controller"
	"github.com/layerset/layerset-csi/pkg/source"
	"github.com/layerset/layerset-csi/test/envtest"
)

// pushImage pushes an image of one layer per file and returns its tagged
// and pinned references and its layers.
func pushImage(t *testing.T, reg *testimage.Registry, repoTag string, files ...string) (string, string, []v1.Layer) {
	t.Helper()
	var layers []v1.Layer
	for _, f := range files {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(f, repoTag+" "+f)}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := testimage.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	pinned := reg.Push(t, repoTag, img)
	return reg.Host + "/" + repoTag, pinned, layers
}

func TestCluster(t *testing.T) {
	cfg, c := envtest.Start(t)
	ctx := t.Context()
	reg := testimage.NewRegistry(t)
	private := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "s3cret"))
	opts := source.Options{Insecure: []string{reg.Host, private.Host}}

	cat, err := catalog.StartCluster(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}

	base, _, baseLayers := pushImage(t, private, "base:v1", "b1", "b2")
	app, appPinned, appLayers := pushImage(t, reg, "app:v1", "a1")
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pull"},
			Type:       corev1.SecretTypeDockerConfigJson,
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: private.DockerConfigJSON()},
		},
		&v1alpha1.LayerSet{
			ObjectMeta: metav1.ObjectMeta{Name: "base"},
			Spec: v1alpha1.LayerSetSpec{
				Layers:      []v1alpha1.LayerSource{{Image: base}},
				PullSecrets: []v1alpha1.SecretReference{{Namespace: "team", Name: "pull"}},
			},
		},
		&v1alpha1.LayerSet{
			ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec:       v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{LayerSet: "base"}, {Image: app}}},
		},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("NotResolvedYet", func(t *testing.T) {
		// No controller runs yet: the LayerSet exists but has no status.
		envtest.Eventually(t, func() error {
			_, _, err := cat.Resolve(ctx, "app")
			if !errors.Is(err, catalog.ErrNotReady) || !strings.Contains(err.Error(), "has not resolved generation 1") {
				return fmt.Errorf("Resolve(app) = %v; want ErrNotReady, not resolved", err)
			}
			return nil
		})
	})

	t.Run("StatusOfAnOlderGeneration", func(t *testing.T) {
		// Written as the controller would, before any controller runs.
		ls := &v1alpha1.LayerSet{
			ObjectMeta: metav1.ObjectMeta{Name: "by-hand"},
			Spec:       v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{Image: app}}},
		}
		if err := c.Create(ctx, ls); err != nil {
			t.Fatal(err)
		}
		ls.Status.ObservedGeneration = ls.Generation
		for _, l := range appLayers {
			d, _ := l.Digest()
			diffID, _ := l.DiffID()
			size, _ := l.Size()
			ls.Status.Chain = append(ls.Status.Chain, v1alpha1.ResolvedLayer{Digest: d.String(), DiffID: diffID.String(), Size: size, Source: appPinned})
		}
		meta.SetStatusCondition(&ls.Status.Conditions, metav1.Condition{
			Type: v1alpha1.ConditionResolved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonResolved,
			Message: "by hand", ObservedGeneration: ls.Generation,
		})
		if err := c.Status().Update(ctx, ls); err != nil {
			t.Fatal(err)
		}
		envtest.Eventually(t, func() error {
			_, chain, err := cat.Resolve(ctx, "by-hand")
			if err != nil {
				return err
			}
			if len(chain) != 1 || chain[0].DiffID.String() != ls.Status.Chain[0].DiffID || chain[0].Source != appPinned {
				return fmt.Errorf("chain %+v; want the layer of %s", chain, appPinned)
			}
			return nil
		})

		// The spec changes; the status still describes generation 1.
		ls.Spec.Layers = append(ls.Spec.Layers, v1alpha1.LayerSource{Image: base})
		if err := c.Update(ctx, ls); err != nil {
			t.Fatal(err)
		}
		envtest.Eventually(t, func() error {
			_, _, err := cat.Resolve(ctx, "by-hand")
			if !errors.Is(err, catalog.ErrNotReady) || !strings.Contains(err.Error(), "has not resolved generation 2") {
				return fmt.Errorf("Resolve(by-hand) = %v; want ErrNotReady, generation 2 not resolved", err)
			}
			return nil
		})
	})

	t.Run("NotFound", func(t *testing.T) {
		if _, _, err := cat.Resolve(ctx, "nope"); !errors.Is(err, compose.ErrLayerSetNotFound) {
			t.Errorf("Resolve(nope) = %v; want ErrLayerSetNotFound", err)
		}
	})

	startController(t, cfg, opts)

	t.Run("NotReadyCarriesTheReason", func(t *testing.T) {
		ls := &v1alpha1.LayerSet{
			ObjectMeta: metav1.ObjectMeta{Name: "broken"},
			Spec:       v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{Image: reg.Host + "/nope:v1"}}},
		}
		if err := c.Create(ctx, ls); err != nil {
			t.Fatal(err)
		}
		envtest.Eventually(t, func() error {
			_, _, err := cat.Resolve(ctx, "broken")
			if !errors.Is(err, catalog.ErrNotReady) || !strings.Contains(err.Error(), v1alpha1.ReasonImageNotFound) {
				return fmt.Errorf("Resolve(broken) = %v; want ErrNotReady with reason ImageNotFound", err)
			}
			return nil
		})
	})

	t.Run("ReturnsThePinnedChain", func(t *testing.T) {
		var ls *v1alpha1.LayerSet
		var chain []compose.Layer
		envtest.Eventually(t, func() error {
			var err error
			ls, chain, err = cat.Resolve(ctx, "app")
			return err
		})
		want := append(baseLayers, appLayers...)
		if len(chain) != len(want) || len(ls.Status.Chain) != len(want) {
			t.Fatalf("chain of %d layers, status.chain of %d; want %d", len(chain), len(ls.Status.Chain), len(want))
		}
		for i, l := range chain {
			diffID, _ := want[i].DiffID()
			st := ls.Status.Chain[i]
			if l.DiffID != diffID || l.DiffID.String() != st.DiffID || l.Digest.String() != st.Digest || l.Source != st.Source || l.Entry != int(st.Entry) {
				t.Errorf("chain[%d] = %s %s from %s entry %d; status says %+v, want diffID %s", i, l.Digest, l.DiffID, l.Source, l.Entry, st, diffID)
			}
			// The layers open: base's through the pull secret that only the
			// included LayerSet names.
			rc, err := l.Open(ctx)
			if err != nil {
				t.Fatalf("opening chain[%d]: %v", i, err)
			}
			n, err := io.Copy(io.Discard, rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil || n != l.Size {
				t.Errorf("reading chain[%d]: %d bytes, %v; want %d", i, n, err, l.Size)
			}
		}
		if chain[0].Entry != 0 || chain[2].Entry != 1 {
			t.Errorf("entries %d, %d; want 0 for base, 1 for app", chain[0].Entry, chain[2].Entry)
		}
	})

	t.Run("KeyReader", func(t *testing.T) {
		if err := c.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "settings"},
			Data:       map[string]string{"app.toml": "port = 8080\n"},
			BinaryData: map[string][]byte{"logo.bin": {0, 1, 2}},
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "db"},
			Data:       map[string][]byte{"password": []byte("hunter2")},
		}); err != nil {
			t.Fatal(err)
		}
		api, err := client.New(cfg, client.Options{Scheme: c.Scheme()})
		if err != nil {
			t.Fatal(err)
		}
		keys := catalog.KeyReader(api)
		ref := func(name, key string) v1alpha1.KeyReference {
			return v1alpha1.KeyReference{Namespace: "team", Name: name, Key: key}
		}
		for _, tc := range []struct {
			kind string
			ref  v1alpha1.KeyReference
			want string
			err  error
		}{
			{compose.KindConfigMap, ref("settings", "app.toml"), "port = 8080\n", nil},
			{compose.KindConfigMap, ref("settings", "logo.bin"), "\x00\x01\x02", nil},
			{compose.KindSecret, ref("db", "password"), "hunter2", nil},
			{compose.KindConfigMap, ref("settings", "missing"), "", catalog.ErrNotReady},
			{compose.KindConfigMap, ref("absent", "app.toml"), "", catalog.ErrNotReady},
			{compose.KindSecret, ref("absent", "password"), "", catalog.ErrNotReady},
		} {
			got, err := keys(ctx, tc.kind, tc.ref)
			if string(got) != tc.want || !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Errorf("%s %s/%s key %s = %q, %v; want %q, %v", tc.kind, tc.ref.Namespace, tc.ref.Name, tc.ref.Key, got, err, tc.want, tc.err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.ref.Name) {
				t.Errorf("error %q does not name %s", err, tc.ref.Name)
			}
		}
	})
}

// startController runs the LayerSet controller until t ends.
func startController(t *testing.T, cfg *rest.Config, opts source.Options) {
	t.Helper()
	ctx := t.Context()
	mgr, err := controller.NewManager(cfg, controller.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := controller.SetupWithManager(ctx, mgr, controller.Options{Source: opts}); err != nil {
		t.Fatal(err)
	}
	envtest.RunManager(t, ctx, mgr)
}
