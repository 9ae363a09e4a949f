//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// prefetchLabel is the node label the scenario's LayerSet prefetches on.
const prefetchLabel = "layerset.io/e2e-prefetch"

// testPrefetch is scenario 8: a LayerSet whose spec.prefetch selects the
// node is pulled into the node's cache, and reported ready there, before
// any pod uses it; the first pod's volume then mounts without a pull.
func testPrefetch(t *testing.T, c *cluster) {
	// Content of this run only, so that no earlier run cached it.
	nonce := strconv.FormatInt(time.Now().UnixNano(), 10)
	img := c.push(t, "e2e/prefetch:1",
		[]testimage.Entry{testimage.Dir("opt"), testimage.File("opt/prefetched", nonce+"\n")},
		[]testimage.Entry{testimage.Dir("opt"), testimage.File("opt/second", "layer 2 of "+nonce+"\n")})
	offset := c.registryOffset(t)

	ls := &v1alpha1.LayerSet{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-prefetch"},
		Spec: v1alpha1.LayerSetSpec{
			Layers:   []v1alpha1.LayerSource{{Image: c.registry.Host + "/e2e/prefetch:1"}},
			Prefetch: &metav1.LabelSelector{MatchLabels: map[string]string{prefetchLabel: "true"}},
		},
	}
	c.create(t, ls)
	t.Cleanup(func() { c.deleteAndWait(t, ls) })
	c.eventually(t, resolveTimeout, "LayerSet e2e-prefetch resolved", func(ctx context.Context) error {
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(ls), ls); err != nil {
			return err
		}
		return conditionIs(ls, v1alpha1.ConditionResolved, metav1.ConditionTrue, "")
	})
	checkChain(t, ls, []chainEntry{{img, 0}})

	c.labelNode(t, prefetchLabel, "true")
	t.Cleanup(func() { c.labelNode(t, prefetchLabel, "") })
	c.eventually(t, 2*time.Minute, "e2e-prefetch cached on "+c.node, func(ctx context.Context) error {
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(ls), ls); err != nil {
			return err
		}
		s := ls.Status.Cache
		if s.Wanted != 1 || s.Ready != 1 || !slices.Equal(s.Nodes, []string{c.node}) || ls.Status.ReadyNodes != "1/1" {
			return fmt.Errorf("status.cache %+v, readyNodes %q", s, ls.Status.ReadyNodes)
		}
		return nil
	})
	var cache v1alpha1.NodeCache
	c.get(t, client.ObjectKey{Name: c.node}, &cache)
	i := slices.IndexFunc(cache.Status.LayerSets, func(s v1alpha1.NodeLayerSetStatus) bool { return s.Name == ls.Name })
	if i < 0 || !cache.Status.LayerSets[i].Ready || cache.Status.LayerSets[i].ChainID != ls.Status.ChainID {
		t.Errorf("NodeCache %s does not report e2e-prefetch ready with chain %s: %+v", c.node, ls.Status.ChainID, cache.Status.LayerSets)
	}
	if n, detail := layerPulls(c.blobPulls(t, offset), img); n < len(img.Layers) {
		t.Errorf("the node pulled %d layer blobs of e2e/prefetch from the registry (%s), want each at least once", n, detail)
	}

	offset = c.registryOffset(t)
	pod, _ := c.runPod(t, c.testPod("prefetched", inlineVolume(ls.Name, false)))
	if got := c.mustExec(t, pod.Name, "cat "+mountPath+"/opt/prefetched "+mountPath+"/opt/second"); got != nonce+"\nlayer 2 of "+nonce+"\n" {
		t.Errorf("pod %s reads %q from its prefetched volume", pod.Name, got)
	}
	if n, detail := layerPulls(c.blobPulls(t, offset), img); n != 0 {
		t.Errorf("mounting the prefetched LayerSet pulled %d layer blobs (%s), want none", n, detail)
	}
	m := c.podVolume(t, pod)
	c.deleteAndWait(t, pod)
	c.checkVolumeGone(t, m)
}

// labelNode sets the node's label key to value, or removes it when value
// is "".
func (c *cluster) labelNode(t testing.TB, key, value string) {
	t.Helper()
	c.eventually(t, 30*time.Second, "label "+key+" on node "+c.node, func(ctx context.Context) error {
		var node corev1.Node
		if err := c.client.Get(ctx, client.ObjectKey{Name: c.node}, &node); err != nil {
			return err
		}
		if value == "" {
			delete(node.Labels, key)
		} else {
			node.Labels[key] = value
		}
		return c.client.Update(ctx, &node)
	})
}
