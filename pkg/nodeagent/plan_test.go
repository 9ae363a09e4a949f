package nodeagent

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// testLayerSet is a LayerSet of generation 1 whose status holds chain,
// resolved, unless a change says otherwise.
func testLayerSet(name string, chain []string, change ...func(*v1alpha1.LayerSet)) v1alpha1.LayerSet {
	ls := v1alpha1.LayerSet{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1}}
	ls.Status.ObservedGeneration = 1
	for _, d := range chain {
		ls.Status.Chain = append(ls.Status.Chain, v1alpha1.ResolvedLayer{DiffID: d})
	}
	ls.Status.ChainID = "chain-of-" + strings.Join(chain, "+")
	ls.Status.Conditions = []metav1.Condition{{
		Type: v1alpha1.ConditionResolved, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonResolved, ObservedGeneration: 1,
	}}
	for _, c := range change {
		c(&ls)
	}
	return ls
}

func prefetchOn(labels map[string]string) func(*v1alpha1.LayerSet) {
	return func(ls *v1alpha1.LayerSet) { ls.Spec.Prefetch = &metav1.LabelSelector{MatchLabels: labels} }
}

var gpu = map[string]string{"pool": "gpu"}

func stored(sizes map[string]int64) []layers.Layer {
	var out []layers.Layer
	for d, n := range sizes {
		out = append(out, layers.Layer{LayerMeta: layers.LayerMeta{DiffID: d, Size: n}})
	}
	return out
}

func TestPlan(t *testing.T) {
	longErr := strings.Repeat("é", 600) // 1200 bytes, two to a character
	for _, tc := range []struct {
		name    string
		v       view
		want    []v1alpha1.NodeLayerSetStatus
		jobs    []job
		layers  int32
		bytes   int64
		message string // a substring of the first entry's message, when it must say something
	}{{
		name:   "prefetched and cached",
		v:      view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a", "b"}, prefetchOn(gpu))}, stored: stored(map[string]int64{"a": 10, "b": 5, "x": 1})},
		want:   []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a+b", Ready: true}},
		layers: 3,
		bytes:  16,
	}, {
		name:    "prefetched, layers missing: pulled",
		v:       view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a", "b", "c"}, prefetchOn(gpu))}, stored: stored(map[string]int64{"b": 5})},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a+b+c", Missing: 2}},
		jobs:    []job{{"tools", "chain-of-a+b+c"}},
		layers:  1,
		bytes:   5,
		message: "2 of 3 layers are not in the cache; waiting to pull them",
	}, {
		name: "pulling",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a"}, prefetchOn(gpu))},
			pulls: map[string]pullState{"tools": {ChainID: "chain-of-a", Pulling: true}}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a", Missing: 1}},
		jobs:    []job{{"tools", "chain-of-a"}},
		message: "pulling 1 of 1 layers",
	}, {
		name: "pulling, progress sampled",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a", "b"}, prefetchOn(gpu))},
			stored: stored(map[string]int64{"a": 5}),
			pulls: map[string]pullState{"tools": {ChainID: "chain-of-a+b", Pulling: true,
				Progress: layers.ChainProgress{Layers: 2, Present: 1, Pulling: 1, Done: 1288490188, Total: 2 << 30}}}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a+b", Missing: 1, PulledBytes: 1288490188, TotalBytes: 2 << 30}},
		jobs:    []job{{"tools", "chain-of-a+b"}},
		layers:  1,
		bytes:   5,
		message: "pulling 1 of 2 layers: 1.2/2.0 GiB of the chain here",
	}, {
		name: "the progress of an older chain's pull is not this chain's",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a"}, prefetchOn(gpu))},
			pulls: map[string]pullState{"tools": {ChainID: "chain-of-old", Pulling: true, Progress: layers.ChainProgress{Layers: 1, Done: 1, Total: 2}}}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a", Missing: 1}},
		jobs:    []job{{"tools", "chain-of-a"}},
		message: "waiting to pull them",
	}, {
		name: "the last pull of this chain failed",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a"}, prefetchOn(gpu))},
			pulls: map[string]pullState{"tools": {ChainID: "chain-of-a", Err: "registry.example: 503 Service Unavailable"}}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a", Missing: 1}},
		jobs:    []job{{"tools", "chain-of-a"}},
		message: "the last pull failed: registry.example: 503 Service Unavailable",
	}, {
		name: "a failure of an older chain is not this chain's",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a"}, prefetchOn(gpu))},
			pulls: map[string]pullState{"tools": {ChainID: "chain-of-old", Err: "gone"}}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a", Missing: 1}},
		jobs:    []job{{"tools", "chain-of-a"}},
		message: "waiting to pull them",
	}, {
		name: "long error messages are cut to the schema's limit",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a"}, prefetchOn(gpu))},
			pulls: map[string]pullState{"tools": {ChainID: "chain-of-a", Err: longErr}}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a", Missing: 1}},
		jobs:    []job{{"tools", "chain-of-a"}},
		message: "éé...",
	}, {
		name: "spec changed, not resolved yet: reported, not pulled",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", []string{"a"}, prefetchOn(gpu),
			func(ls *v1alpha1.LayerSet) { ls.Generation = 2 })}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools", ChainID: "chain-of-a", Missing: 1}},
		message: "waiting for the controller to resolve generation 2",
	}, {
		name: "resolution failed: not pulled",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("tools", nil, prefetchOn(gpu), func(ls *v1alpha1.LayerSet) {
			ls.Status.ChainID = ""
			ls.Status.Conditions[0].Status, ls.Status.Conditions[0].Reason, ls.Status.Conditions[0].Message = metav1.ConditionFalse, v1alpha1.ReasonImageNotFound, "no such tag"
		})}},
		want:    []v1alpha1.NodeLayerSetStatus{{Name: "tools"}},
		message: "not resolved: ImageNotFound: no such tag",
	}, {
		name: "an empty chain is held by every node",
		v:    view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("empty", nil, prefetchOn(gpu))}},
		want: []v1alpha1.NodeLayerSetStatus{{Name: "empty", ChainID: "chain-of-", Ready: true}},
	}, {
		name: "used by a volume, not prefetched",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("app", []string{"a", "b"})},
			stored: stored(map[string]int64{"a": 1, "b": 1}), volumes: [][]string{{"a", "b"}}},
		want:   []v1alpha1.NodeLayerSetStatus{{Name: "app", ChainID: "chain-of-a+b", Ready: true}},
		layers: 2,
		bytes:  2,
	}, {
		name: "a volume of another chain, or of part of this one, does not count",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{testLayerSet("app", []string{"a", "b"})},
			volumes: [][]string{{"a"}, {"b", "a"}, {"a", "b", "c"}, {}}},
	}, {
		name: "selectors that do not select this node",
		v: view{nodeLabels: gpu, layerSets: []v1alpha1.LayerSet{
			testLayerSet("cpu", []string{"a"}, prefetchOn(map[string]string{"pool": "cpu"})),
			testLayerSet("unlabelled", []string{"a"}),
			testLayerSet("invalid", []string{"a"}, func(ls *v1alpha1.LayerSet) {
				ls.Spec.Prefetch = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pool", Operator: "Near"}}}
			}),
			testLayerSet("deleted", []string{"a"}, prefetchOn(gpu), func(ls *v1alpha1.LayerSet) { ls.DeletionTimestamp = &metav1.Time{Time: time.Now()} }),
		}},
	}, {
		name: "an empty selector selects every node; entries sorted by name",
		v: view{nodeLabels: nil, layerSets: []v1alpha1.LayerSet{
			testLayerSet("zeta", []string{"a"}, func(ls *v1alpha1.LayerSet) { ls.Spec.Prefetch = &metav1.LabelSelector{} }),
			testLayerSet("alpha", []string{"a"}, func(ls *v1alpha1.LayerSet) { ls.Spec.Prefetch = &metav1.LabelSelector{} }),
		}, stored: stored(map[string]int64{"a": 7})},
		want: []v1alpha1.NodeLayerSetStatus{
			{Name: "alpha", ChainID: "chain-of-a", Ready: true},
			{Name: "zeta", ChainID: "chain-of-a", Ready: true},
		},
		layers: 1,
		bytes:  7,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			tc.v.budget = 1 << 30
			st, jobs := plan(tc.v)
			if st.LayerCount != tc.layers || st.Bytes != tc.bytes || st.BudgetBytes != 1<<30 {
				t.Errorf("totals: %d layers, %d bytes, budget %d; want %d, %d, %d", st.LayerCount, st.Bytes, st.BudgetBytes, tc.layers, tc.bytes, 1<<30)
			}
			var msg string
			if len(st.LayerSets) > 0 {
				msg = st.LayerSets[0].Message
			}
			if tc.message == "" && msg != "" && st.LayerSets[0].Ready {
				t.Errorf("a ready entry has message %q", msg)
			}
			if !strings.Contains(msg, tc.message) {
				t.Errorf("message %q does not say %q", msg, tc.message)
			}
			if len(msg) > maxMessage || !utf8.ValidString(msg) {
				t.Errorf("message of %d bytes (valid UTF-8: %t); the limit is %d", len(msg), utf8.ValidString(msg), maxMessage)
			}
			for i := range st.LayerSets {
				st.LayerSets[i].Message = ""
			}
			if !reflect.DeepEqual(st.LayerSets, tc.want) {
				t.Errorf("entries\n%+v\nwant\n%+v", st.LayerSets, tc.want)
			}
			if !slices.Equal(jobs, tc.jobs) {
				t.Errorf("pulls %+v, want %+v", jobs, tc.jobs)
			}
		})
	}
}

func TestKeepSet(t *testing.T) {
	all := []v1alpha1.LayerSet{
		testLayerSet("tools", []string{"a", "b"}, prefetchOn(gpu)),
		// Not resolved for its new spec yet: its old chain is what
		// volumes mount meanwhile.
		testLayerSet("stale", []string{"c"}, prefetchOn(gpu), func(ls *v1alpha1.LayerSet) { ls.Generation = 5 }),
		testLayerSet("elsewhere", []string{"d"}, prefetchOn(map[string]string{"pool": "cpu"})),
		testLayerSet("app", []string{"e"}),
	}
	got := keepSet(selected(all, gpu))
	if want := map[string]bool{"a": true, "b": true, "c": true}; !maps.Equal(got, want) {
		t.Errorf("keep %v, want %v", got, want)
	}
}

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven ..."},
		{"aébcdefg", 7, "aéb..."}, // é is two bytes, kept whole
		{"abéxyz", 6, "ab..."},    // the cut falls inside é
	} {
		if got := truncate(tc.in, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
