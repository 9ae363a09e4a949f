package controller_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/controller"
	"github.com/layerset/layerset-csi/pkg/source"
	"github.com/layerset/layerset-csi/test/envtest"
)

// pushed is an image in a test registry.
type pushed struct {
	pinned string // HOST/repo@sha256:...
	tagged string // HOST/repo:tag
	layers []v1.Layer
}

func push(t *testing.T, reg *testimage.Registry, repoTag string, files ...string) pushed {
	t.Helper()
	p := pushed{tagged: reg.Host + "/" + repoTag}
	for _, f := range files {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(f, repoTag+" "+f)}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		p.layers = append(p.layers, l)
	}
	img, err := testimage.Image(p.layers...)
	if err != nil {
		t.Fatal(err)
	}
	p.pinned = reg.Push(t, repoTag, img)
	return p
}

// want is the status.chain entries an image contributes.
func (p pushed) want(t *testing.T, entry int32) []v1alpha1.ResolvedLayer {
	t.Helper()
	var out []v1alpha1.ResolvedLayer
	for _, l := range p.layers {
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		mt, _ := l.MediaType()
		out = append(out, v1alpha1.ResolvedLayer{
			Digest: d.String(), DiffID: diff.String(), MediaType: string(mt), Size: size, Source: p.pinned, Entry: entry,
		})
	}
	return out
}

func layerSet(name string, entries ...v1alpha1.LayerSource) *v1alpha1.LayerSet {
	return &v1alpha1.LayerSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.LayerSetSpec{Layers: entries},
	}
}

func image(ref string) v1alpha1.LayerSource   { return v1alpha1.LayerSource{Image: ref} }
func nested(name string) v1alpha1.LayerSource { return v1alpha1.LayerSource{LayerSet: name} }

type env struct {
	t   *testing.T
	ctx context.Context
	c   client.Client
}

func (e env) create(objs ...client.Object) {
	e.t.Helper()
	for _, o := range objs {
		if err := e.c.Create(e.ctx, o); err != nil {
			e.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// condition waits until the LayerSet's status describes its current
// generation with the Resolved condition's reason, and returns it.
func (e env) condition(name, reason string) *v1alpha1.LayerSet {
	e.t.Helper()
	var ls v1alpha1.LayerSet
	envtest.Eventually(e.t, func() error {
		if err := e.c.Get(e.ctx, client.ObjectKey{Name: name}, &ls); err != nil {
			return err
		}
		c := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved)
		if ls.Status.ObservedGeneration != ls.Generation || c == nil || c.ObservedGeneration != ls.Generation {
			return fmt.Errorf("LayerSet %s generation %d: status is of generation %d, conditions %+v", name, ls.Generation, ls.Status.ObservedGeneration, ls.Status.Conditions)
		}
		if c.Reason != reason {
			return fmt.Errorf("LayerSet %s: Resolved reason %s (%s), want %s", name, c.Reason, c.Message, reason)
		}
		return nil
	})
	ready := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionReady)
	wantReady := metav1.ConditionFalse
	if reason == v1alpha1.ReasonResolved {
		wantReady = metav1.ConditionTrue
	}
	if ready == nil || ready.Status != wantReady || ready.ObservedGeneration != ls.Generation {
		e.t.Errorf("LayerSet %s: Ready condition %+v, want status %s", name, ready, wantReady)
	}
	return &ls
}

// event waits for an Event about the LayerSet with this reason.
func (e env) event(name, reason string) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		var list corev1.EventList
		if err := e.c.List(e.ctx, &list); err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.InvolvedObject.Kind == "LayerSet" && ev.InvolvedObject.Name == name {
				if ev.Reason == reason {
					return nil
				}
				seen = append(seen, ev.Reason)
			}
		}
		return fmt.Errorf("no Event %s about LayerSet %s; seen %v", reason, name, seen)
	})
}

func (e env) update(name string, mutate func(*v1alpha1.LayerSet)) {
	e.t.Helper()
	var ls v1alpha1.LayerSet
	if err := e.c.Get(e.ctx, client.ObjectKey{Name: name}, &ls); err != nil {
		e.t.Fatal(err)
	}
	mutate(&ls)
	if err := e.c.Update(e.ctx, &ls); err != nil {
		e.t.Fatal(err)
	}
}

func pullSecret(ns, name string, dockerConfig []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: dockerConfig},
	}
}

func chainsEqual(t *testing.T, name string, got, want []v1alpha1.ResolvedLayer) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("LayerSet %s: status.chain =\n%+v\nwant\n%+v", name, got, want)
	}
}

func TestController(t *testing.T) {
	cfg, c := envtest.Start(t)
	ctx, cancel := context.WithCancel(t.Context())
	reg := testimage.NewRegistry(t)
	private := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "s3cret"))

	// The controller runs with the permissions config/rbac grants it, and
	// elects itself leader as the Deployment does.
	e := env{t: t, ctx: ctx, c: c}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "layerset-system"}})
	mgr, err := controller.NewManager(e.asController(cfg), controller.ManagerOptions{
		LeaderElection:          true,
		LeaderElectionNamespace: "layerset-system",
	})
	if err != nil {
		t.Fatal(err)
	}
	opts := controller.Options{Source: source.Options{Insecure: []string{reg.Host, private.Host}}}
	if err := controller.SetupWithManager(ctx, mgr, opts); err != nil {
		t.Fatal(err)
	}
	envtest.RunManager(t, ctx, mgr)
	t.Cleanup(cancel)
	// A watch the role does not allow never syncs: fail fast on that.
	syncCtx, syncDone := context.WithTimeout(ctx, envtest.Timeout)
	defer syncDone()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		t.Fatalf("the controller's cache did not sync in %s: does config/rbac allow its watches?", envtest.Timeout)
	}
	for _, ns := range []string{"team", "other"} {
		e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}

	base := push(t, reg, "base:v1", "b1", "b2")
	app := push(t, reg, "app:v1", "a1")

	t.Run("PinsDigests", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		e.create(layerSet("pin", image(base.tagged)))
		ls := e.condition("pin", v1alpha1.ReasonResolved)
		want := base.want(t, 0)
		chainsEqual(t, "pin", ls.Status.Chain, want)
		if !strings.Contains(ls.Status.Chain[0].Source, "@sha256:") {
			t.Errorf("source %q is not pinned by digest", ls.Status.Chain[0].Source)
		}
		if ls.Status.LayerCount != 2 || ls.Status.TotalSize != want[0].Size+want[1].Size || ls.Status.ChainID == "" {
			t.Errorf("layerCount %d, totalSize %d, chainID %q", ls.Status.LayerCount, ls.Status.TotalSize, ls.Status.ChainID)
		}
		if ls.Status.ReadyNodes != "0/0" {
			t.Errorf("readyNodes %q, want 0/0", ls.Status.ReadyNodes)
		}
		e.event("pin", v1alpha1.ReasonResolved)
	})

	t.Run("ComposesNestedLayerSets", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		e.create(layerSet("nest-base", image(base.tagged)), layerSet("nest-app", nested("nest-base"), image(app.tagged)))
		ls := e.condition("nest-app", v1alpha1.ReasonResolved)
		chainsEqual(t, "nest-app", ls.Status.Chain, append(base.want(t, 0), app.want(t, 1)...))
		if len(ls.Status.Includes) != 1 || ls.Status.Includes[0].Name != "nest-base" || ls.Status.Includes[0].Generation != 1 {
			t.Errorf("includes = %+v, want nest-base at generation 1", ls.Status.Includes)
		}

		// Changing the included LayerSet re-resolves the includer, even
		// through another LayerSet in between.
		e.create(layerSet("nest-top", nested("nest-app")))
		e.condition("nest-top", v1alpha1.ReasonResolved)
		next := push(t, reg, "base:v2", "c1")
		e.update("nest-base", func(ls *v1alpha1.LayerSet) { ls.Spec.Layers = []v1alpha1.LayerSource{image(next.tagged)} })
		want := append(next.want(t, 0), app.want(t, 1)...)
		for _, name := range []string{"nest-app", "nest-top"} {
			envtest.Eventually(t, func() error {
				var ls v1alpha1.LayerSet
				if err := c.Get(ctx, client.ObjectKey{Name: name}, &ls); err != nil {
					return err
				}
				if got := diffIDs(ls.Status.Chain); !slices.Equal(got, diffIDs(want)) {
					return fmt.Errorf("LayerSet %s chain %v, want %v", name, got, diffIDs(want))
				}
				return nil
			})
		}
	})

	t.Run("Cycle", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		e.create(layerSet("cycle-a", nested("cycle-b")), layerSet("cycle-b", image(app.tagged), nested("cycle-a")))
		ls := e.condition("cycle-a", v1alpha1.ReasonCycle)
		if msg := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved).Message; !strings.Contains(msg, "cycle-a -> cycle-b -> cycle-a") {
			t.Errorf("message %q does not show the cycle", msg)
		}
		if ls.Status.Chain != nil {
			t.Errorf("a cycle has a chain: %+v", ls.Status.Chain)
		}
		e.condition("cycle-b", v1alpha1.ReasonCycle)
		e.event("cycle-a", v1alpha1.ReasonCycle)
	})

	t.Run("ImageNotFound", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		e.create(layerSet("missing-image", image(reg.Host+"/nope:v1")))
		ls := e.condition("missing-image", v1alpha1.ReasonImageNotFound)
		if msg := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionReady).Message; !strings.Contains(msg, "nope:v1") {
			t.Errorf("Ready message %q does not name the image", msg)
		}
		e.event("missing-image", v1alpha1.ReasonImageNotFound)
	})

	t.Run("LayerSetNotFoundUntilCreated", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		e.create(layerSet("orphan", nested("orphan-base"), image(app.tagged)))
		e.condition("orphan", v1alpha1.ReasonLayerSetNotFound)
		e.create(layerSet("orphan-base", image(base.tagged)))
		ls := e.condition("orphan", v1alpha1.ReasonResolved)
		chainsEqual(t, "orphan", ls.Status.Chain, append(base.want(t, 0), app.want(t, 1)...))
	})

	t.Run("TooManyLayers", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		files := make([]string, v1alpha1.MaxLayers/2)
		for i := range files {
			files[i] = fmt.Sprintf("f%03d", i)
		}
		half := push(t, reg, "half:v1", files...)
		// 250 + 250 layers, plus the init layer, is one over the limit.
		e.create(layerSet("half", image(half.tagged)), layerSet("too-many", nested("half"), nested("half")))
		e.condition("half", v1alpha1.ReasonResolved)
		ls := e.condition("too-many", v1alpha1.ReasonTooManyLayers)
		if msg := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved).Message; !strings.Contains(msg, "500") {
			t.Errorf("message %q does not give the limit", msg)
		}
	})

	t.Run("PullSecrets", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		secret := push(t, private, "secret:v1", "s1")
		withSecrets := func(name string, refs ...v1alpha1.SecretReference) *v1alpha1.LayerSet {
			ls := layerSet(name, image(secret.tagged))
			ls.Spec.PullSecrets = refs
			return ls
		}
		ref := func(ns, name string) v1alpha1.SecretReference {
			return v1alpha1.SecretReference{Namespace: ns, Name: name}
		}

		e.create(withSecrets("auth-none"))
		e.condition("auth-none", v1alpha1.ReasonUnauthorized)
		e.event("auth-none", v1alpha1.ReasonUnauthorized)

		// A missing Secret is reported until it is created.
		e.create(withSecrets("auth-later", ref("team", "later")))
		ls := e.condition("auth-later", v1alpha1.ReasonPullSecretInvalid)
		if msg := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved).Message; !strings.Contains(msg, "team/later") {
			t.Errorf("message %q does not name the Secret", msg)
		}
		e.create(pullSecret("team", "later", private.DockerConfigJSON()))
		ls = e.condition("auth-later", v1alpha1.ReasonResolved)
		chainsEqual(t, "auth-later", ls.Status.Chain, secret.want(t, 0))

		// A Secret of another type, and one that is not a docker config.
		e.create(&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "opaque"},
			Data:       map[string][]byte{corev1.DockerConfigJsonKey: private.DockerConfigJSON()},
		}, pullSecret("team", "garbage", []byte(`{"auths": [1]}`)))
		e.create(withSecrets("auth-opaque", ref("team", "opaque")), withSecrets("auth-garbage", ref("team", "garbage")))
		e.condition("auth-opaque", v1alpha1.ReasonPullSecretInvalid)
		e.condition("auth-garbage", v1alpha1.ReasonPullSecretInvalid)

		// Wrong credentials are refused by the registry; fixing the Secret
		// resolves the LayerSet.
		wrong := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "wrong"))
		doc := strings.ReplaceAll(string(wrong.DockerConfigJSON()), wrong.Host, private.Host)
		e.create(pullSecret("other", "wrong", []byte(doc)), withSecrets("auth-wrong", ref("other", "wrong")))
		e.condition("auth-wrong", v1alpha1.ReasonUnauthorized)
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: "other", Name: "wrong"}, &s); err != nil {
			t.Fatal(err)
		}
		s.Data[corev1.DockerConfigJsonKey] = private.DockerConfigJSON()
		if err := c.Update(ctx, &s); err != nil {
			t.Fatal(err)
		}
		e.condition("auth-wrong", v1alpha1.ReasonResolved)

		// An included LayerSet's images are pulled with its own secrets,
		// which the includer records for the nodes.
		e.create(layerSet("auth-includer", nested("auth-later"), image(app.tagged)))
		ls = e.condition("auth-includer", v1alpha1.ReasonResolved)
		if !slices.Equal(ls.Status.PullSecrets, []v1alpha1.SecretReference{ref("team", "later")}) {
			t.Errorf("status.pullSecrets = %+v, want team/later", ls.Status.PullSecrets)
		}
	})

	t.Run("RejectsOCILayouts", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		e.create(layerSet("layout", image("oci:/var/lib/images/app:v1")))
		e.condition("layout", v1alpha1.ReasonInvalidSpec)
	})

	t.Run("NodeCacheReadiness", func(t *testing.T) {
		e := env{t: t, ctx: ctx, c: c}
		node := func(name string, labels map[string]string) *corev1.Node {
			return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		}
		gpu := map[string]string{"example.com/pool": "gpu"}
		e.create(node("node-a", gpu), node("node-b", gpu), node("node-c", nil))
		prefetch := layerSet("ready-prefetch", image(base.tagged))
		prefetch.Spec.Prefetch = &metav1.LabelSelector{MatchLabels: gpu}
		e.create(prefetch, layerSet("ready-ondemand", image(app.tagged)))
		pre := e.condition("ready-prefetch", v1alpha1.ReasonResolved)
		ond := e.condition("ready-ondemand", v1alpha1.ReasonResolved)
		e.readyNodes("ready-prefetch", "0/2", nil)
		e.readyNodes("ready-ondemand", "0/0", nil)

		report := func(nodeName string, entries ...v1alpha1.NodeLayerSetStatus) {
			t.Helper()
			var n corev1.Node
			if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, &n); err != nil {
				t.Fatal(err)
			}
			nc := v1alpha1.NewNodeCache(n.Name, n.UID)
			if err := c.Get(ctx, client.ObjectKeyFromObject(nc), nc); apierrors.IsNotFound(err) {
				if err := c.Create(ctx, nc); err != nil {
					t.Fatal(err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			nc.Status.LayerSets = entries
			if err := c.Status().Update(ctx, nc); err != nil {
				t.Fatal(err)
			}
		}
		entry := func(ls *v1alpha1.LayerSet, ready bool) v1alpha1.NodeLayerSetStatus {
			return v1alpha1.NodeLayerSetStatus{Name: ls.Name, ChainID: ls.Status.ChainID, Ready: ready}
		}
		report("node-a", entry(pre, true), entry(ond, false))
		report("node-c", entry(pre, true), entry(ond, true))
		// node-c holds the prefetch LayerSet but is not selected; without
		// prefetch, the nodes that report a LayerSet are the wanted ones.
		e.readyNodes("ready-prefetch", "1/2", []string{"node-a"})
		e.readyNodes("ready-ondemand", "1/2", []string{"node-c"})

		// A node that joins the selection counts at once; a report about
		// another chain does not count.
		var n corev1.Node
		if err := c.Get(ctx, client.ObjectKey{Name: "node-c"}, &n); err != nil {
			t.Fatal(err)
		}
		n.Labels = gpu
		if err := c.Update(ctx, &n); err != nil {
			t.Fatal(err)
		}
		e.readyNodes("ready-prefetch", "2/3", []string{"node-a", "node-c"})
		stale := entry(pre, true)
		stale.ChainID = "sha256:" + strings.Repeat("0", 64)
		report("node-b", stale)
		report("node-a", entry(ond, true))
		e.readyNodes("ready-prefetch", "1/3", []string{"node-c"})
		e.readyNodes("ready-ondemand", "2/2", []string{"node-a", "node-c"})
	})

	t.Run("Validation", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ls   *v1alpha1.LayerSet
			want string
		}{
			{"both-image-and-layerset", layerSet("both", v1alpha1.LayerSource{Image: app.tagged, LayerSet: "x"}),
				"exactly one of image or layerSet"},
			{"neither", layerSet("neither", v1alpha1.LayerSource{}), "exactly one of image or layerSet"},
			{"dotdot-path", initFile("dotdot", "../etc/passwd"), "must not contain '..'"},
			{"dotdot-inside", initFile("dotdot2", "etc/../../passwd"), "must not contain '..'"},
			{"absolute-path", initFile("abs", "/etc/passwd"), "path must be relative"},
			{"empty", &v1alpha1.LayerSet{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}, "at least one layer or an init layer"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := c.Create(ctx, tc.ls)
				if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("create: %v; want Invalid saying %q", err, tc.want)
				}
			})
		}
		// Dots that are not a path element are fine.
		if err := c.Create(ctx, initFile("dots", "etc/..config/a..b"), client.DryRunAll); err != nil {
			t.Errorf("create of etc/..config/a..b: %v", err)
		}
	})

	t.Run("ExamplesAreAccepted", func(t *testing.T) {
		files, err := filepath.Glob("../../deploy/examples/layersets/*.yaml")
		if err != nil || len(files) == 0 {
			t.Fatalf("no examples: %v", err)
		}
		for _, f := range files {
			ls, err := compose.LoadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Create(ctx, ls, client.DryRunAll); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			var got v1alpha1.LayerSet
			if err := c.Get(ctx, client.ObjectKeyFromObject(ls), &got); !apierrors.IsNotFound(err) {
				t.Errorf("%s: dry run created LayerSet %s: %v", f, ls.Name, err)
			}
		}
	})
}

func initFile(name, path string) *v1alpha1.LayerSet {
	content := "x"
	return &v1alpha1.LayerSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.LayerSetSpec{Init: &v1alpha1.InitLayer{Files: []v1alpha1.InitFile{{Path: path, Content: &content}}}},
	}
}

func diffIDs(chain []v1alpha1.ResolvedLayer) []string {
	out := make([]string, len(chain))
	for i, l := range chain {
		out[i] = l.DiffID
	}
	return out
}

// readyNodes waits for the LayerSet's cache readiness.
func (e env) readyNodes(name, want string, nodes []string) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		var ls v1alpha1.LayerSet
		if err := e.c.Get(e.ctx, client.ObjectKey{Name: name}, &ls); err != nil {
			return err
		}
		if ls.Status.ReadyNodes != want || !slices.Equal(ls.Status.Cache.Nodes, nodes) {
			return fmt.Errorf("LayerSet %s: readyNodes %q, nodes %v; want %q, %v", name, ls.Status.ReadyNodes, ls.Status.Cache.Nodes, want, nodes)
		}
		return nil
	})
}

// controllerUser is who the controller runs as in the test.
const controllerUser = "layerset-controller"

// asController installs the roles of config/rbac, binds them to
// controllerUser, and returns cfg impersonating that user.
func (e env) asController(cfg *rest.Config) *rest.Config {
	e.t.Helper()
	data, err := os.ReadFile("../../config/rbac/controller/role.yaml")
	if err != nil {
		e.t.Fatalf("%v (run make generate)", err)
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		var role unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &role.Object); err != nil {
			e.t.Fatal(err)
		}
		if len(role.Object) == 0 {
			continue
		}
		e.create(&role)
		binding := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "rbac.authorization.k8s.io/v1",
			"kind":       role.GetKind() + "Binding",
			"metadata":   map[string]any{"name": role.GetName(), "namespace": role.GetNamespace()},
			"roleRef":    map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": role.GetKind(), "name": role.GetName()},
			"subjects":   []any{map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": controllerUser}},
		}}
		e.create(binding)
	}
	restricted := rest.CopyConfig(cfg)
	restricted.Impersonate = rest.ImpersonationConfig{UserName: controllerUser}
	return restricted
}
