//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// exampleFile holds the example LayerSets the scenarios mount.
const exampleFile = "deploy/examples/layerset.yaml"

// testLayerSets is scenario 2: a user applies the example LayerSets, whose
// images the node's registry serves: "runtime", a chain of three layers,
// and "demo", which includes runtime and adds busybox's layer and init
// files from a ConfigMap and pod-info templates. Both become Ready with
// their chains pinned to the pushed digests, and `kubectl get layersets`
// shows their layers, size and node readiness.
func testLayerSets(t *testing.T, c *cluster) {
	stand := map[string][][]testimage.Entry{
		"library/python:3.13-slim": pythonLayers(),
		"library/busybox:1.37":     busyboxLayers(),
	}
	raw, err := os.ReadFile(repoFile(t, exampleFile))
	if err != nil {
		t.Fatal(err)
	}
	pushed := map[string]pushedImage{}
	for _, m := range regexp.MustCompile(`image:\s*docker\.io/(\S+)`).FindAllStringSubmatch(string(raw), -1) {
		layers, ok := stand[m[1]]
		if !ok {
			t.Fatalf("%s names the image docker.io/%s, which the suite has no stand-in for: add one in images_test.go", exampleFile, m[1])
		}
		pushed[m[1]] = c.push(t, m[1], layers...)
	}
	python, busybox := pushed["library/python:3.13-slim"], pushed["library/busybox:1.37"]
	if python.Pinned == "" || busybox.Pinned == "" {
		t.Fatalf("%s no longer names docker.io/library/python:3.13-slim and busybox:1.37; update the scenario", exampleFile)
	}
	// Only the registry differs from what users apply.
	manifest := strings.ReplaceAll(string(raw), "docker.io/", c.registry.Host+"/")
	c.mustKubectl(t, manifest, "apply", "-f", "-")

	runtime := c.waitReady(t, "runtime")
	checkChain(t, runtime, []chainEntry{{python, 0}})
	demo := c.waitReady(t, "demo")
	checkChain(t, demo, []chainEntry{{python, 0}, {busybox, 1}})
	if len(demo.Status.Includes) != 1 || demo.Status.Includes[0].Name != "runtime" || demo.Status.Includes[0].UID != runtime.UID {
		t.Errorf("demo status.includes = %+v, want runtime (uid %s)", demo.Status.Includes, runtime.UID)
	}

	out := c.mustKubectl(t, "", "get", "layersets", "runtime", "demo")
	rows := parseTable(t, out, "NAME", "LAYERS", "SIZE", "READY NODES", "READY")
	for _, ls := range []*v1alpha1.LayerSet{runtime, demo} {
		row := rows[ls.Name]
		want := map[string]string{
			"LAYERS":      strconv.Itoa(len(ls.Status.Chain)),
			"SIZE":        strconv.FormatInt(ls.Status.TotalSize, 10),
			"READY NODES": ls.Status.ReadyNodes,
			"READY":       "True",
		}
		for col, v := range want {
			if row[col] != v {
				t.Errorf("kubectl get layersets: %s %s = %q, want %q\n%s", ls.Name, col, row[col], v, out)
			}
		}
	}
}

// chainEntry is an image expected in a resolved chain, from spec entry.
type chainEntry struct {
	image pushedImage
	entry int32
}

// checkChain checks a resolved chain against the images pushed: every
// layer's digests and size, its source pinned to the pushed manifest.
func checkChain(t testing.TB, ls *v1alpha1.LayerSet, want []chainEntry) {
	t.Helper()
	var expect []v1alpha1.ResolvedLayer
	var size int64
	for _, w := range want {
		for _, l := range w.image.Layers {
			expect = append(expect, v1alpha1.ResolvedLayer{Digest: l.Digest, DiffID: l.DiffID, Size: l.Size, Source: w.image.Pinned, Entry: w.entry})
			size += l.Size
		}
	}
	got := ls.Status.Chain
	if len(got) != len(expect) {
		t.Fatalf("LayerSet %s: chain of %d layers, want %d: %+v", ls.Name, len(got), len(expect), got)
	}
	for i := range expect {
		g, w := got[i], expect[i]
		if g.Digest != w.Digest || g.DiffID != w.DiffID || g.Size != w.Size || g.Source != w.Source || g.Entry != w.Entry {
			t.Errorf("LayerSet %s chain[%d] = %+v, want %+v", ls.Name, i, g, w)
		}
	}
	if int(ls.Status.LayerCount) != len(expect) || ls.Status.TotalSize != size {
		t.Errorf("LayerSet %s: layerCount %d, totalSize %d; want %d, %d", ls.Name, ls.Status.LayerCount, ls.Status.TotalSize, len(expect), size)
	}
	if !strings.HasPrefix(ls.Status.ChainID, "sha256:") {
		t.Errorf("LayerSet %s: chainID %q, want sha256:...", ls.Name, ls.Status.ChainID)
	}
}

// waitReady waits until the controller has reported LayerSet name Ready for
// its current spec.
func (c *cluster) waitReady(t testing.TB, name string) *v1alpha1.LayerSet {
	t.Helper()
	var ls v1alpha1.LayerSet
	c.eventually(t, resolveTimeout, "LayerSet "+name+" Ready", func(ctx context.Context) error {
		if err := c.client.Get(ctx, client.ObjectKey{Name: name}, &ls); err != nil {
			return err
		}
		return conditionIs(&ls, v1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})
	return &ls
}

// conditionIs reports, as an error, how ls's condition typ differs from
// status and reason ("" for any), for its current generation.
func conditionIs(ls *v1alpha1.LayerSet, typ string, status metav1.ConditionStatus, reason string) error {
	if ls.Status.ObservedGeneration != ls.Generation {
		return fmt.Errorf("status is of generation %d, the spec's is %d", ls.Status.ObservedGeneration, ls.Generation)
	}
	cond := meta.FindStatusCondition(ls.Status.Conditions, typ)
	switch {
	case cond == nil:
		return fmt.Errorf("no %s condition in %+v", typ, ls.Status.Conditions)
	case cond.Status != status || (reason != "" && cond.Reason != reason):
		return fmt.Errorf("%s is %s (%s: %s), want %s %s", typ, cond.Status, cond.Reason, cond.Message, status, reason)
	}
	return nil
}

// parseTable reads kubectl's table output into rows keyed by the first
// column, cutting each line where the header's columns start (a header may
// hold single spaces: "READY NODES"). It fails t when a column is missing.
func parseTable(t testing.TB, out string, columns ...string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	cells := regexp.MustCompile(`[^ ]+( [^ ]+)*`).FindAllStringIndex(lines[0], -1)
	names := make([]string, len(cells))
	for i, c := range cells {
		names[i] = lines[0][c[0]:c[1]]
	}
	for _, col := range columns {
		if !slices.Contains(names, col) {
			t.Fatalf("kubectl output has no column %s:\n%s", col, out)
		}
	}
	rows := map[string]map[string]string{}
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, c := range cells {
			end := len(line)
			if i+1 < len(cells) {
				end = min(cells[i+1][0], len(line))
			}
			if c[0] < end {
				row[names[i]] = strings.TrimSpace(line[c[0]:end])
			}
		}
		rows[row[names[0]]] = row
	}
	return rows
}

// testBadLayerSets is scenario 10: a LayerSet naming an image the registry
// does not have, and two that include each other, get conditions that say
// so; a pod using one stays Pending, and its events carry the kubelet's
// mount failure with the driver's FailedPrecondition error.
func testBadLayerSets(t *testing.T, c *cluster) {
	missingRef := c.registry.Host + "/e2e/missing:1"
	bad := []*v1alpha1.LayerSet{
		{ObjectMeta: metav1.ObjectMeta{Name: "e2e-missing"}, Spec: v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{Image: missingRef}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "e2e-cycle-a"}, Spec: v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{LayerSet: "e2e-cycle-b"}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "e2e-cycle-b"}, Spec: v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{LayerSet: "e2e-cycle-a"}}}},
	}
	for _, ls := range bad {
		c.create(t, ls)
		t.Cleanup(func() { c.deleteAndWait(t, ls) })
	}
	for _, w := range []struct{ name, reason, mentions string }{
		{"e2e-missing", v1alpha1.ReasonImageNotFound, missingRef},
		{"e2e-cycle-a", v1alpha1.ReasonCycle, "e2e-cycle-b"},
		{"e2e-cycle-b", v1alpha1.ReasonCycle, "e2e-cycle-a"},
	} {
		var ls v1alpha1.LayerSet
		c.eventually(t, resolveTimeout, "LayerSet "+w.name+" not Ready: "+w.reason, func(ctx context.Context) error {
			if err := c.client.Get(ctx, client.ObjectKey{Name: w.name}, &ls); err != nil {
				return err
			}
			if err := conditionIs(&ls, v1alpha1.ConditionReady, metav1.ConditionFalse, w.reason); err != nil {
				return err
			}
			return conditionIs(&ls, v1alpha1.ConditionResolved, metav1.ConditionFalse, w.reason)
		})
		if msg := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved).Message; !strings.Contains(msg, w.mentions) {
			t.Errorf("LayerSet %s: Resolved message %q does not name %s", w.name, msg, w.mentions)
		}
	}

	for _, ls := range []string{"e2e-missing", "e2e-cycle-a"} {
		pod := c.testPod("bad-"+strings.TrimPrefix(ls, "e2e-"), inlineVolume(ls, false))
		c.create(t, pod)
		// The kubelet retries, and may report other failures first (the
		// driver not registered yet, say): wait for the driver's answer.
		c.eventually(t, podTimeout, "FailedMount event of pod "+pod.Name+" with the driver's FailedPrecondition about "+ls, func(ctx context.Context) error {
			var list corev1.EventList
			if err := c.client.List(ctx, &list, client.InNamespace(c.ns)); err != nil {
				return err
			}
			for _, e := range list.Items {
				if e.InvolvedObject.Name == pod.Name && e.Reason == "FailedMount" &&
					strings.Contains(e.Message, "FailedPrecondition") && strings.Contains(e.Message, ls) {
					return nil
				}
			}
			return fmt.Errorf("events:\n%s", c.events(pod.Name))
		})
		c.get(t, client.ObjectKeyFromObject(pod), pod)
		if pod.Status.Phase != corev1.PodPending {
			t.Errorf("pod %s is %s with a volume of LayerSet %s, want Pending", pod.Name, pod.Status.Phase, ls)
		}
		c.deleteAndWait(t, pod)
	}
}
