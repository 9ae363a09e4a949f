package node

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/layerset/layerset-csi/pkg/layers"
)

func TestSweepUppers(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	stage := func(id string) string {
		t.Helper()
		p := filepath.Join(e.dir, id)
		if _, err := e.client.NodeStageVolume(ctx, e.stageRequest(id, p)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	unstage := func(id, p string) {
		t.Helper()
		if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: p}); err != nil {
			t.Fatal(err)
		}
	}
	unstage("pv-alive", stage("pv-alive"))
	unstage("pv-deleted", stage("pv-deleted"))
	unstage("pv-unknown", stage("pv-unknown"))
	stagedPath := stage("pv-staged") // deleted in the cluster, but still staged here
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest("csi-inline", filepath.Join(e.dir, "inline"))); err != nil {
		t.Fatal(err)
	}

	var asked []string
	removed, err := e.node.SweepUppers(ctx, func(_ context.Context, id string) (bool, error) {
		asked = append(asked, id)
		switch id {
		case "pv-alive":
			return true, nil
		case "pv-unknown":
			return false, errors.New("API server unreachable")
		}
		return false, nil
	})
	if err == nil {
		t.Error("SweepUppers hid the error of exists")
	}
	if !slices.Equal(removed, []string{"pv-deleted"}) {
		t.Errorf("removed %v, want [pv-deleted]", removed)
	}
	slices.Sort(asked)
	if !slices.Equal(asked, []string{"pv-alive", "pv-deleted", "pv-unknown"}) {
		t.Errorf("asked about %v; staged and inline volumes must not even be considered", asked)
	}
	if _, err := e.store.Volume("pv-deleted"); !errors.Is(err, layers.ErrVolumeNotFound) {
		t.Errorf("upper of pv-deleted: %v, want removed", err)
	}
	for _, id := range []string{"pv-alive", "pv-unknown", "pv-staged", "csi-inline"} {
		if _, err := e.store.Volume(id); err != nil {
			t.Errorf("%s: %v, want kept", id, err)
		}
	}
	unstage("pv-staged", stagedPath)
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-inline", TargetPath: filepath.Join(e.dir, "inline")}); err != nil {
		t.Fatal(err)
	}
}
