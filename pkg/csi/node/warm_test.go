package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// The files of removed records are kept to be written over by the next
// pod's (record.Options.Spares). A restarted plugin finds every record of
// what is mounted and none of those files, and serves the volumes as
// before.
func TestRecordsAcrossRestartWithSpares(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	target := func(id string) string { return filepath.Join(e.dir, id) }
	for _, id := range []string{"a", "b", "c"} {
		if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest(id, target(id))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "b", TargetPath: target("b")}); err != nil {
		t.Fatal(err)
	}
	stateDir := e.node.cfg.StateDir
	if kept := hiddenFiles(t, stateDir); len(kept) == 0 {
		t.Fatal("no record file kept after an unpublish; the test cannot see spares")
	}

	n, err := New(ctx, e.node.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if kept := hiddenFiles(t, stateDir); len(kept) != 0 {
		t.Errorf("the restarted node left the kept files of the one before: %v", kept)
	}
	for id, want := range map[string]bool{"a": true, "b": false, "c": true} {
		rec, err := n.state.load(id)
		if err != nil || (rec != nil) != want || (want && rec.Phase != phasePublished) {
			t.Errorf("record of %s after the restart: %+v, %v; want one: %t", id, rec, err, want)
		}
	}
	// The restarted node serves them: a new volume, and the old ones torn down.
	if _, err := n.NodePublishVolume(ctx, e.ephemeralRequest("d", target("d"))); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "c", "d"} {
		if _, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target(id)}); err != nil {
			t.Fatalf("unpublish %s after the restart: %v", id, err)
		}
		if exists(target(id)) {
			t.Errorf("target of %s left", id)
		}
	}
	recs, bad, err := n.state.list()
	if len(recs) != 0 || len(bad) != 0 || err != nil {
		t.Errorf("records left: %d, %d unreadable, %v", len(recs), len(bad), err)
	}
}

func hiddenFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out
}
