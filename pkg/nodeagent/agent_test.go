package nodeagent_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	csinode "github.com/layerset/layerset-csi/pkg/csi/node"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/controller"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/nodeagent"
	"github.com/layerset/layerset-csi/pkg/source"
	"github.com/layerset/layerset-csi/test/envtest"
)

const nodeName = "node-a"

// image is a test image pushed to the registry.
type image struct {
	tagged  string
	pinned  string
	diffIDs []v1.Hash
}

func push(t *testing.T, reg *testimage.Registry, repoTag string, files ...string) image {
	t.Helper()
	im := image{tagged: reg.Host + "/" + repoTag}
	var ls []v1.Layer
	for _, f := range files {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(f, repoTag+" "+f)}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		im.diffIDs = append(im.diffIDs, d)
	}
	img, err := testimage.Image(ls...)
	if err != nil {
		t.Fatal(err)
	}
	im.pinned = reg.Push(t, repoTag, img)
	return im
}

// runController runs the LayerSet controller, which resolves LayerSets
// and counts the nodes that hold them, as in a cluster.
func runController(t *testing.T, cfg *rest.Config, opts source.Options) {
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

func layerSet(name, image string, prefetch map[string]string) *v1alpha1.LayerSet {
	ls := &v1alpha1.LayerSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{Image: image}}},
	}
	if prefetch != nil {
		ls.Spec.Prefetch = &metav1.LabelSelector{MatchLabels: prefetch}
	}
	return ls
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNodeAgent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: layers are extracted with their owners, volumes are mounted")
	}
	cfg, c := envtest.Start(t)
	ctx := t.Context()
	hold := newHoldBlob()
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(hold.middleware))
	srcOpts := source.Options{Insecure: []string{reg.Host}}
	tools, app, stray, other := push(t, reg, "tools:v1", "t1", "t2"), push(t, reg, "app:v1", "a1"),
		push(t, reg, "stray:v1", "s1"), push(t, reg, "other:v1", "o1")
	runController(t, cfg, srcOpts)

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{"pool": "gpu"}}}
	for _, o := range []client.Object{
		node,
		layerSet("tools", tools.tagged, map[string]string{"pool": "gpu"}),
		layerSet("other-pool", other.tagged, map[string]string{"pool": "cpu"}),
		layerSet("app", app.tagged, nil),
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	store, err := layers.Open(ctx, layers.Options{Root: filepath.Join(dir, "root"), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}

	// Before the agent starts, the node holds a layer of a volume long
	// gone, and two persistent volumes of LayerSet app with data in their
	// uppers, unstaged. The node service reads LayerSets with its own
	// catalog, as the plugin does before its agent's cache has synced.
	if _, err := store.Pull(ctx, stray.pinned, srcOpts); err != nil {
		t.Fatal(err)
	}
	nodeCat, err := catalog.StartCluster(ctx, cfg, srcOpts)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := csinode.New(ctx, csinode.Config{NodeID: nodeName, StateDir: filepath.Join(dir, "csi"), Store: store, Catalog: nodeCat})
	if err != nil {
		t.Fatal(err)
	}
	waitResolved(t, c, "app")
	for _, id := range []string{"pvc-kept", "pvc-gone"} {
		staging := filepath.Join(dir, "staging", id)
		if _, err := ns.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
			VolumeId:          id,
			StagingTargetPath: staging,
			VolumeCapability: &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER},
			},
			VolumeContext: map[string]string{names.ContextLayerSet: "app"},
		}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(staging, "data"), []byte("written to "+id), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ns.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatal(err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: id},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:               corev1.ResourceList{corev1.ResourceStorage: resourceOne},
				AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: names.DriverName, VolumeHandle: id}},
			},
		}
		if err := c.Create(ctx, pv); err != nil {
			t.Fatal(err)
		}
	}

	// The agent, with the rights its RBAC markers give it, a budget no
	// cache fits in, and no grace for recently used layers.
	mgr, err := nodeagent.NewManager(envtest.AsUser(t, cfg, "layerset-node", "rbac.go"), nodeagent.ManagerOptions{NodeName: nodeName})
	if err != nil {
		t.Fatal(err)
	}
	err = nodeagent.Setup(mgr, nodeagent.Options{
		NodeName:         nodeName,
		Store:            store,
		Catalog:          catalog.NewCluster(mgr.GetCache(), mgr.GetAPIReader(), srcOpts),
		CacheMaxBytes:    1,
		MinLayerAge:      time.Nanosecond,
		Sweeper:          ns,
		ProgressInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	envtest.RunManager(t, ctx, mgr)

	t.Run("PrefetchAndReport", func(t *testing.T) {
		ls := waitResolved(t, c, "tools")
		nc := waitNodeCache(t, c, func(nc *v1alpha1.NodeCache) error {
			want := []v1alpha1.NodeLayerSetStatus{
				{Name: "app", ChainID: waitResolved(t, c, "app").Status.ChainID, Ready: true},
				{Name: "tools", ChainID: ls.Status.ChainID, Ready: true},
			}
			if !slices.Equal(nc.Status.LayerSets, want) {
				return fmt.Errorf("layerSets %+v, want %+v", nc.Status.LayerSets, want)
			}
			return nil
		})
		for _, d := range tools.diffIDs {
			if !store.HasLayer(d) {
				t.Errorf("prefetched layer %s is not in the store", d)
			}
		}
		if store.HasLayer(other.diffIDs[0]) {
			t.Error("the layer of a LayerSet that prefetches on other nodes was pulled")
		}
		if refs := nc.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Node" || refs[0].UID != nodeUID(t, c) {
			t.Errorf("owner references %+v, want the Node %s", refs, nodeName)
		}
		// The controller counts this node as holding tools.
		envtest.Eventually(t, func() error {
			var ls v1alpha1.LayerSet
			if err := c.Get(ctx, client.ObjectKey{Name: "tools"}, &ls); err != nil {
				return err
			}
			if ls.Status.Cache.Ready != 1 || ls.Status.Cache.Wanted != 1 || !slices.Equal(ls.Status.Cache.Nodes, []string{nodeName}) {
				return fmt.Errorf("LayerSet tools: cache %+v, want 1 of 1 on %s", ls.Status.Cache, nodeName)
			}
			return nil
		})
	})

	t.Run("CollectsUnkeptLayers", func(t *testing.T) {
		// Only the stray layer is unused and not prefetched: it goes,
		// though the cache stays over its budget.
		envtest.Eventually(t, func() error {
			if store.HasLayer(stray.diffIDs[0]) {
				return errors.New("the stray layer is still in the store")
			}
			return nil
		})
		for _, d := range append(slices.Clone(tools.diffIDs), app.diffIDs...) {
			if !store.HasLayer(d) {
				t.Errorf("layer %s, prefetched or in use, was collected", d)
			}
		}
		all, err := store.Layers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var bytes int64
		for _, l := range all {
			bytes += l.Size
		}
		waitNodeCache(t, c, func(nc *v1alpha1.NodeCache) error {
			if st := nc.Status; st.LayerCount != int32(len(all)) || st.Bytes != bytes || st.BudgetBytes != 1 || st.UpdateTime == nil {
				return fmt.Errorf("totals %d layers, %d bytes, budget %d, updated %v; want %d, %d, 1", st.LayerCount, st.Bytes, st.BudgetBytes, st.UpdateTime, len(all), bytes)
			}
			return nil
		})
	})

	t.Run("SweepsUppersOfDeletedVolumes", func(t *testing.T) {
		if err := c.Delete(ctx, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-gone"}}); err != nil {
			t.Fatal(err)
		}
		forgetFinalizers(t, c, "pvc-gone")
		envtest.Eventually(t, func() error {
			if _, err := store.Volume("pvc-gone"); !errors.Is(err, layers.ErrVolumeNotFound) {
				return fmt.Errorf("volume pvc-gone: %v, want it removed", err)
			}
			return nil
		})
		vol, err := store.Volume("pvc-kept")
		if err != nil {
			t.Fatalf("volume pvc-kept, whose PersistentVolume exists: %v", err)
		}
		if got := readFile(t, filepath.Join(vol.UpperDir(), "data")); got != "written to pvc-kept" {
			t.Errorf("upper of pvc-kept holds %q", got)
		}
	})

	t.Run("ReportsPullProgress", func(t *testing.T) {
		// A 2 MiB layer whose blob stops after 512 KiB until released.
		big, err := testimage.Layer([]testimage.Entry{testimage.File("data", randomBytes(2<<20))}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		digest, _ := big.Digest()
		size, _ := big.Size()
		img, err := testimage.Image(big)
		if err != nil {
			t.Fatal(err)
		}
		hold.set(digest.String(), 512<<10)
		t.Cleanup(hold.release)
		reg.Push(t, "big:v1", img)
		if err := c.Create(ctx, layerSet("big", reg.Host+"/big:v1", map[string]string{"pool": "gpu"})); err != nil {
			t.Fatal(err)
		}
		chainID := waitResolved(t, c, "big").Status.ChainID
		entry := func(nc *v1alpha1.NodeCache) v1alpha1.NodeLayerSetStatus {
			for _, e := range nc.Status.LayerSets {
				if e.Name == "big" {
					return e
				}
			}
			return v1alpha1.NodeLayerSetStatus{}
		}
		waitNodeCache(t, c, func(nc *v1alpha1.NodeCache) error {
			e := entry(nc)
			if e.ChainID != chainID || e.Ready || e.TotalBytes != size || e.PulledBytes <= 0 || e.PulledBytes > size/2 ||
				!strings.Contains(e.Message, "pulling 1 of 1 layers: ") || !strings.Contains(e.Message, "/2.0 MiB of the chain here") {
				return fmt.Errorf("entry %+v, want part of %d bytes pulled", e, size)
			}
			return nil
		})
		hold.release()
		waitNodeCache(t, c, func(nc *v1alpha1.NodeCache) error {
			if e := entry(nc); !e.Ready || e.PulledBytes != 0 || e.TotalBytes != 0 || e.Message != "" {
				return fmt.Errorf("entry %+v, want it ready, no progress left", e)
			}
			return nil
		})
	})
}

// holdBlob passes the first bytes of one blob, once set, then holds the
// rest back until released: a registry that slows to nothing mid-blob,
// which a real one cannot be made to do on demand.
type holdBlob struct {
	mu      sync.Mutex
	digest  string
	first   int
	free    chan struct{}
	release func()
}

func newHoldBlob() *holdBlob {
	h := &holdBlob{free: make(chan struct{})}
	h.release = sync.OnceFunc(func() { close(h.free) })
	return h
}

func (h *holdBlob) set(digest string, first int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.digest, h.first = digest, first
}

func (h *holdBlob) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		digest, first := h.digest, h.first
		h.mu.Unlock()
		if digest == "" || r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&testimage.PauseWriter{ResponseWriter: w, Left: first, Pause: func() error {
			_ = http.NewResponseController(w).Flush()
			select {
			case <-h.free:
				return nil
			case <-r.Context().Done():
				return r.Context().Err()
			}
		}}, r)
	})
}

// randomBytes is n bytes no compressor shrinks, the same at every run.
func randomBytes(n int) string {
	r := rand.New(rand.NewChaCha8([32]byte{}))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

var resourceOne = resource.MustParse("1Gi")

func waitResolved(t *testing.T, c client.Client, name string) *v1alpha1.LayerSet {
	t.Helper()
	var ls v1alpha1.LayerSet
	envtest.Eventually(t, func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, &ls); err != nil {
			return err
		}
		if ls.Status.ObservedGeneration != ls.Generation || ls.Status.ChainID == "" {
			return fmt.Errorf("LayerSet %s not resolved: %+v", name, ls.Status.Conditions)
		}
		return nil
	})
	return &ls
}

func waitNodeCache(t *testing.T, c client.Client, cond func(*v1alpha1.NodeCache) error) *v1alpha1.NodeCache {
	t.Helper()
	var nc v1alpha1.NodeCache
	envtest.Eventually(t, func() error {
		if err := c.Get(t.Context(), client.ObjectKey{Name: nodeName}, &nc); err != nil {
			return err
		}
		return cond(&nc)
	})
	return &nc
}

func nodeUID(t *testing.T, c client.Client) types.UID {
	t.Helper()
	var n corev1.Node
	if err := c.Get(t.Context(), client.ObjectKey{Name: nodeName}, &n); err != nil {
		t.Fatal(err)
	}
	return n.UID
}

// forgetFinalizers does what kube-controller-manager's pv-protection
// controller would for a PersistentVolume bound to nothing: it lets the
// deletion finish. envtest runs no controller-manager.
func forgetFinalizers(t *testing.T, c client.Client, name string) {
	t.Helper()
	envtest.Eventually(t, func() error {
		var pv corev1.PersistentVolume
		err := c.Get(t.Context(), client.ObjectKey{Name: name}, &pv)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		pv.Finalizers = nil
		if err := c.Update(t.Context(), &pv); err != nil {
			return err
		}
		return fmt.Errorf("PersistentVolume %s still exists", name)
	})
}
