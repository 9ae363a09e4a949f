package snapshot

import (
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/pkg/csi/names"
)

func TestSnapshotIDs(t *testing.T) {
	diff := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	longest := strings.Repeat("n", MaxNodeIDBytes)
	id := localID(diff, "snapshot-0b1c", longest)
	if len(id) != maxIDBytes || !wellFormedID(id) {
		t.Errorf("id %q of the longest node id: %d bytes, well formed %t", id, len(id), wellFormedID(id))
	}
	if localID(diff, "a", "node-1") == localID(diff, "b", "node-1") {
		t.Error("two names of one layer share an id")
	}
	for _, node := range []string{"ip-10-0-1-2.eu-west-1.compute.internal", "node_1", "N1"} {
		if err := checkNodeID(node); err != nil {
			t.Errorf("node id %q refused: %v", node, err)
		}
	}
	for _, node := range []string{"", longest + "x", "node/1", "-node", "node@1", "nöde"} {
		if err := checkNodeID(node); err == nil {
			t.Errorf("node id %q accepted", node)
		}
	}
	for id, want := range map[string]bool{
		"registry.example/snapshots@sha256:" + strings.Repeat("c", 64):     true,
		"registry.example:5000/a/b@sha256:" + strings.Repeat("c", 64):      true,
		"registry.example/snapshots@sha256:" + strings.Repeat("C", 64):     false,
		"snapshots@sha256:" + strings.Repeat("c", 64):                      false,
		"registry.example/snapshots:tag":                                   false,
		strings.Repeat("a", 24) + "." + strings.Repeat("b", 16) + "@node":  true,
		strings.Repeat("a", 24) + "." + strings.Repeat("b", 15) + "@node":  false,
		strings.Repeat("a", 24) + "." + strings.Repeat("b", 16) + "@":      false,
		strings.Repeat("a", 24) + "." + strings.Repeat("b", 16) + "@n/ode": false,
		"reallyfakesnapshotid": false,
		"":                     false,
	} {
		if got := wellFormedID(id); got != want {
			t.Errorf("wellFormedID(%q) = %t, want %t", id, got, want)
		}
	}
}

func TestTagFor(t *testing.T) {
	for name, want := range map[string]string{
		"snapshot-3f6a0c52-7e3e-4b7c-9c1f-0d0e52c3b1a2": "snapshot-3f6a0c52-7e3e-4b7c-9c1f-0d0e52c3b1a2",
		"nightly_1.2": "nightly_1.2",
	} {
		if got := tagFor(name); got != want {
			t.Errorf("tagFor(%q) = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{".hidden", "a/b", strings.Repeat("x", 129), "ünïcode"} {
		if got := tagFor(name); !validTag.MatchString(got) || got == name {
			t.Errorf("tagFor(%q) = %q, want a valid tag made from a hash", name, got)
		}
	}
}

func TestCheckRepository(t *testing.T) {
	for repo, want := range map[string]string{
		"registry.example/snapshots": "registry.example/snapshots",
		"127.0.0.1:5000/team/snaps":  "127.0.0.1:5000/team/snaps",
		"ghcr.io/org/" + strings.Repeat("a", MaxRepositoryBytes-len("ghcr.io/org/")): "ghcr.io/org/" + strings.Repeat("a", MaxRepositoryBytes-len("ghcr.io/org/")),
	} {
		got, err := checkRepository(repo)
		if err != nil || got != want {
			t.Errorf("checkRepository(%q) = %q, %v; want %q", repo, got, err, want)
		}
	}
	for _, repo := range []string{
		"", "snapshots", "registry.example/snapshots:v1", "registry.example/snapshots@sha256:" + strings.Repeat("c", 64),
		"oci:/srv/snapshots", "ghcr.io/org/" + strings.Repeat("a", MaxRepositoryBytes), "registry.example/Upper",
	} {
		if _, err := checkRepository(repo); err == nil {
			t.Errorf("checkRepository(%q) accepted", repo)
		}
	}
}

func TestCovers(t *testing.T) {
	here := map[string]string{names.TopologyKey: "node-1"}
	for _, tc := range []struct {
		want map[string]string
		ok   bool
	}{
		{map[string]string{names.TopologyKey: "node-1"}, true},
		{map[string]string{names.TopologyKey: "node-1", "topology.kubernetes.io/zone": "a"}, true},
		{map[string]string{names.TopologyKey: "node-2"}, false},
		{map[string]string{"topology.kubernetes.io/zone": "a"}, false},
	} {
		if got := covers(tc.want, here); got != tc.ok {
			t.Errorf("covers(%v) = %t, want %t", tc.want, got, tc.ok)
		}
	}
}
