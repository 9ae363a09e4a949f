package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// An id shaped like another id's hashed name gets a directory of its own:
// publishing it, and the cleanup of anything that fails, leave the other
// volume's upper and mount alone (issue 11, defect 1).
func TestCollidingIDKeepsOtherVolume(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const victim = "a/b"
	sum := sha256.Sum256([]byte(victim))
	collider := "h-" + hex.EncodeToString(sum[:20])
	mkTarget := func(name string) string {
		p := filepath.Join(e.dir, name, "mount")
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		return p
	}
	victimTarget, colliderTarget := mkTarget("victim"), mkTarget("collider")
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest(victim, victimTarget)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victimTarget, "written"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest(collider, colliderTarget)); err != nil {
		t.Fatalf("publish of the colliding id: %v", err)
	}
	if v, c := mustVolumeDir(t, e, victim), mustVolumeDir(t, e, collider); v == c {
		t.Errorf("both ids map to %s", v)
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: collider, TargetPath: colliderTarget}); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(victimTarget, "written")); got != "kept" {
		t.Errorf("the other volume's file reads %q after the colliding id came and went", got)
	}
}

func mustVolumeDir(t *testing.T, e *env, id string) string {
	t.Helper()
	vol, err := e.store.Volume(id)
	if err != nil {
		t.Fatal(err)
	}
	return vol.Dir
}

// Unpublishing a target the node knows nothing of deletes nothing that is
// not an empty directory: not a file given as the target, nor a symlink
// (issue 11, defect 2).
func TestUnknownTargetNotDeleted(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	file := filepath.Join(e.dir, "file")
	if err := os.WriteFile(file, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(e.dir, "dest")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.dir, "link")
	if err := os.Symlink(dest, link); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{file, link} {
		if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "unknown", TargetPath: target}); err != nil {
			t.Errorf("unpublish of unknown target %s: %v", target, err)
		}
		if _, err := os.Lstat(target); err != nil {
			t.Errorf("%s was deleted: %v", target, err)
		}
	}
	if got := readFile(t, file); got != "mine" {
		t.Errorf("file reads %q", got)
	}
}
