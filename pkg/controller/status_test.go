package controller

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

func TestChainID(t *testing.T) {
	a := "sha256:" + strings.Repeat("a", 64)
	b := "sha256:" + strings.Repeat("b", 64)
	c := "sha256:" + strings.Repeat("c", 64)
	chain := func(ids ...string) []v1alpha1.ResolvedLayer {
		out := make([]v1alpha1.ResolvedLayer, len(ids))
		for i, id := range ids {
			out[i].DiffID = id
		}
		return out
	}
	// Expected values computed with sha256sum, per the OCI image spec:
	// ChainID(A|B) = sha256(ChainID(A) + " " + DiffID(B)).
	for _, tc := range []struct {
		name  string
		chain []v1alpha1.ResolvedLayer
		want  string
	}{
		{"empty", nil, ""},
		{"one layer is its diffID", chain(a), a},
		{"two", chain(a, b), "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c"},
		{"three", chain(a, b, c), "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := chainID(tc.chain); got != tc.want {
				t.Errorf("chainID = %q, want %q", got, tc.want)
			}
		})
	}
	if chainID(chain(a, b)) == chainID(chain(b, a)) {
		t.Error("chainID ignores the order of layers")
	}
}

func TestClassify(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("LayerSet \"x\" layers[0]: %w", err) }
	for _, tc := range []struct {
		err    error
		reason string
		retry  bool
	}{
		{wrap(compose.ErrCycle), v1alpha1.ReasonCycle, false},
		{wrap(compose.ErrTooManyLayers), v1alpha1.ReasonTooManyLayers, false},
		{wrap(compose.ErrLayerSetNotFound), v1alpha1.ReasonLayerSetNotFound, false},
		{wrap(compose.ErrInvalidSpec), v1alpha1.ReasonInvalidSpec, false},
		{wrap(source.ErrInvalidReference), v1alpha1.ReasonInvalidSpec, false},
		{wrap(catalog.ErrPullSecretInvalid), v1alpha1.ReasonPullSecretInvalid, true},
		{wrap(source.ErrNotFound), v1alpha1.ReasonImageNotFound, true},
		{wrap(source.ErrUnauthorized), v1alpha1.ReasonUnauthorized, true},
		{wrap(source.ErrUnsupported), v1alpha1.ReasonImageUnsupported, true},
		{wrap(errors.New("connection refused")), v1alpha1.ReasonRegistryError, true},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			reason, retry := classify(tc.err)
			if reason != tc.reason || retry != tc.retry {
				t.Errorf("classify(%v) = %s, %v; want %s, %v", tc.err, reason, retry, tc.reason, tc.retry)
			}
		})
	}
}

func TestRetriesBackOff(t *testing.T) {
	var rs retries
	t0 := time.Unix(1000, 0)
	if w := rs.wait("x", "in1", t0); w != 0 {
		t.Fatalf("first attempt waits %v", w)
	}
	// Consecutive failures with the same inputs double the delay, up to
	// the maximum.
	var delays []time.Duration
	now := t0
	for range 10 {
		d := rs.failed("x", "in1", true, now)
		delays = append(delays, d)
		if w := rs.wait("x", "in1", now.Add(d/2)); w != d/2 {
			t.Fatalf("halfway through %v, wait = %v; want %v", d, w, d/2)
		}
		now = now.Add(d)
		if w := rs.wait("x", "in1", now); w != 0 {
			t.Fatalf("after %v, wait = %v; want 0", d, w)
		}
	}
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, maxRetry, maxRetry, maxRetry, maxRetry}
	if !slices.Equal(delays, want) {
		t.Errorf("delays = %v, want %v", delays, want)
	}
	// New inputs are tried at once, and start over from the minimum.
	if w := rs.wait("x", "in2", now); w != 0 {
		t.Errorf("changed inputs wait %v", w)
	}
	if d := rs.failed("x", "in2", true, now); d != minRetry {
		t.Errorf("delay after a change = %v, want %v", d, minRetry)
	}
	// A failure no retry can fix waits for a change.
	if d := rs.failed("y", "in1", false, now); d != -1 {
		t.Errorf("permanent failure delay = %v, want -1", d)
	}
	if w := rs.wait("y", "in1", now.Add(time.Hour)); w != -1 {
		t.Errorf("permanent failure wait = %v, want -1", w)
	}
	if w := rs.wait("y", "in2", now); w != 0 {
		t.Errorf("permanent failure with new inputs waits %v", w)
	}
	rs.forget("x")
	if w := rs.wait("x", "in2", now); w != 0 {
		t.Errorf("forgotten LayerSet waits %v", w)
	}
}

func TestSummarize(t *testing.T) {
	resolved := func(chainID string, layers int) *v1alpha1.LayerSetStatus {
		st := &v1alpha1.LayerSetStatus{ChainID: chainID, Chain: make([]v1alpha1.ResolvedLayer, layers)}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionTrue, Reason: "Resolved"})
		return st
	}
	cache := func(entries ...v1alpha1.NodeLayerSetStatus) *v1alpha1.NodeCache {
		return &v1alpha1.NodeCache{Status: v1alpha1.NodeCacheStatus{LayerSets: entries}}
	}
	ready := func(name, chain string) v1alpha1.NodeLayerSetStatus {
		return v1alpha1.NodeLayerSetStatus{Name: name, ChainID: chain, Ready: true}
	}
	caches := map[string]*v1alpha1.NodeCache{
		"n1": cache(ready("app", "c1")),
		"n2": cache(ready("app", "c0")),                                      // checked an older chain
		"n3": cache(v1alpha1.NodeLayerSetStatus{Name: "app", ChainID: "c1"}), // still pulling
		"n4": cache(ready("other", "c1")),
		"n5": cache(ready("app", "c1"), ready("other", "c9")),
	}
	all := []string{"n1", "n2", "n3", "n4", "n5", "n6"}
	for _, tc := range []struct {
		name   string
		st     *v1alpha1.LayerSetStatus
		wanted []string
		ready  int32
		nodes  []string
	}{
		{"counts nodes that checked the current chain", resolved("c1", 2), all, 2, []string{"n1", "n5"}},
		{"only wanted nodes count", resolved("c1", 2), []string{"n5", "n2"}, 1, []string{"n5"}},
		{"an unresolved LayerSet is ready nowhere", &v1alpha1.LayerSetStatus{ChainID: "c1"}, all, 0, nil},
		{"an empty chain is ready everywhere", resolved("", 0), all, 6, all},
		{"no nodes", resolved("c1", 2), nil, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := summarize("app", tc.st, tc.wanted, caches)
			if got.Wanted != int32(len(tc.wanted)) || got.Ready != tc.ready || !slices.Equal(got.Nodes, tc.nodes) {
				t.Errorf("summarize = %+v; want wanted %d, ready %d, nodes %v", got, len(tc.wanted), tc.ready, tc.nodes)
			}
		})
	}
}

func TestSummarizeBoundsNodeList(t *testing.T) {
	st := &v1alpha1.LayerSetStatus{}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionTrue, Reason: "Resolved"})
	var wanted []string
	for i := range 3 * v1alpha1.MaxListedNodes {
		wanted = append(wanted, fmt.Sprintf("node-%04d", i))
	}
	got := summarize("app", st, wanted, nil)
	if got.Ready != int32(len(wanted)) || len(got.Nodes) != v1alpha1.MaxListedNodes || got.Nodes[0] != "node-0000" {
		t.Errorf("ready %d, %d nodes listed starting %q; want %d ready, %d listed from node-0000",
			got.Ready, len(got.Nodes), got.Nodes[0], len(wanted), v1alpha1.MaxListedNodes)
	}
}

func TestReadyFollowsResolved(t *testing.T) {
	st := &v1alpha1.LayerSetStatus{Cache: v1alpha1.NodeCacheState{Wanted: 3, Ready: 1}}
	setFailed(st, 4, v1alpha1.ReasonImageNotFound, "registry.example.com/app:v1: not found")
	setReady(st, 4)
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonImageNotFound || !strings.Contains(c.Message, "app:v1") || c.ObservedGeneration != 4 {
		t.Errorf("Ready after a failure = %+v", c)
	}
	if st.ReadyNodes != "1/3" {
		t.Errorf("readyNodes = %q", st.ReadyNodes)
	}
	setResolved(st, 5, []v1alpha1.ResolvedLayer{{DiffID: "sha256:1", Size: 10}, {DiffID: "sha256:2", Size: 5}}, 15)
	setReady(st, 5)
	c = meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if c.Status != metav1.ConditionTrue || c.Reason != v1alpha1.ReasonReady || c.ObservedGeneration != 5 {
		t.Errorf("Ready after resolving = %+v", c)
	}
	if st.LayerCount != 2 || st.TotalSize != 15 || st.ChainID == "" {
		t.Errorf("status after resolving: %d layers, %d bytes, chain %q", st.LayerCount, st.TotalSize, st.ChainID)
	}
	setFailed(st, 6, v1alpha1.ReasonCycle, strings.Repeat("x", 10*maxMessage))
	if st.Chain != nil || st.LayerCount != 0 || st.ChainID != "" {
		t.Error("a failure keeps the chain of an earlier spec")
	}
	if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionResolved); len(c.Message) != maxMessage {
		t.Errorf("message of %d bytes, want it cut to %d", len(c.Message), maxMessage)
	}
}
