package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// Targets the node must not mount on: inside its own directories, behind a
// symlink, a directory with files, one with someone else's mount (issue
// 11, defects 3 to 6). Each is refused with the code a caller acts on, and
// leaves nothing mounted and the foreign mount where it was.
func TestRefusedTargets(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	real := filepath.Join(e.dir, "real")
	if err := os.MkdirAll(filepath.Join(real, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(e.dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(e.dir, "full")
	if err := os.MkdirAll(full, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(full, "data"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy := filepath.Join(e.dir, "busy")
	if err := os.MkdirAll(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", busy, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(busy, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(busy, "foreign"), []byte("tmpfs"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, target string
		want         codes.Code
	}{
		{"the store root", e.store.Root(), codes.InvalidArgument},
		{"a layer directory", filepath.Join(e.store.Dir(), "l"), codes.InvalidArgument},
		{"the records", filepath.Join(e.root, "csi", "x"), codes.InvalidArgument},
		{"above the store", filepath.Dir(e.store.Root()), codes.InvalidArgument},
		{"a symlink", link, codes.InvalidArgument},
		{"below a symlink", filepath.Join(link, "mnt"), codes.InvalidArgument},
		{"a directory with files", full, codes.FailedPrecondition},
		{"a foreign mount", busy, codes.FailedPrecondition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest("csi-refused", tc.target))
			if status.Code(err) != tc.want {
				t.Errorf("publish at %s: %v, want %v", tc.target, err, tc.want)
			}
			if rec, _ := e.node.state.load("csi-refused"); rec != nil {
				t.Errorf("record left: %+v", rec)
			}
		})
	}
	if m := mountsUnder(t, real, full); len(m) > 0 {
		t.Errorf("mounts made behind a refusal: %v", m)
	}
	if got := readFile(t, filepath.Join(busy, "foreign")); got != "tmpfs" {
		t.Errorf("the foreign mount reads %q", got)
	}
	if got := readFile(t, filepath.Join(full, "data")); got != "x" {
		t.Errorf("the full directory's file reads %q", got)
	}
	// An unpublish of an id the node does not know leaves a foreign mount.
	_, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "unknown", TargetPath: busy})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("unpublish of an unknown id over a foreign mount: %v, want FailedPrecondition", err)
	}
	if got := readFile(t, filepath.Join(busy, "foreign")); got != "tmpfs" {
		t.Errorf("after the unpublish the foreign mount reads %q", got)
	}
}

// A mount made over a published volume is not taken for the volume's:
// unpublish refuses, and leaves both (issue 11, defect 4).
func TestMountOverVolumeNotUnmounted(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	target := filepath.Join(e.dir, "pod", "mount")
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest("csi-over", target)); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-over", TargetPath: target})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("unpublish under a foreign mount: %v, want FailedPrecondition", err)
	}
	if n := len(mountsUnder(t, target)); n != 2 {
		t.Errorf("%d mounts at the target, want the volume's and the tmpfs", n)
	}
	if err := unix.Unmount(target, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-over", TargetPath: target}); err != nil {
		t.Errorf("unpublish once the foreign mount is gone: %v", err)
	}
	if m := mountsUnder(t, e.dir, e.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

// A first NodeStageVolume that fails after the store made the volume's
// directories (here: a layer's content moved away behind the store's back,
// so the mount fails) leaves neither directories nor a record (issue 11).
func TestFailedFirstStageLeavesNothing(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	staging := filepath.Join(e.dir, "staging-a")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodeStageVolume(ctx, e.stageRequest("pv-a", staging)); err != nil {
		t.Fatal(err)
	}
	// Gone whether the mount names the layer by its l/ link (mount(2)) or
	// its directory (fsconfig).
	diffs, err := filepath.Glob(filepath.Join(e.store.Dir(), strings.Repeat("[0-9a-f]", 64), "diff"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		if err := os.Rename(d, d+".gone"); err != nil {
			t.Fatal(err)
		}
	}
	if len(diffs) == 0 {
		t.Fatal("no layer to move away")
	}
	other := filepath.Join(e.dir, "staging-b")
	if err := os.MkdirAll(other, 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodeStageVolume(ctx, e.stageRequest("pv-b", other)); err == nil {
		t.Fatal("stage with a layer's content gone succeeded; the test cannot make it fail")
	}
	if vol, err := e.store.Volume("pv-b"); err == nil {
		t.Errorf("the failed first stage left the volume's directories at %s", vol.Dir)
	}
	if matches, _ := filepath.Glob(filepath.Join(e.store.Dir(), "vol-pv-b*")); len(matches) > 0 {
		t.Errorf("directories left: %v", matches)
	}
	if rec, err := e.node.state.load("pv-b"); rec != nil || err != nil {
		t.Errorf("record left: %+v, %v", rec, err)
	}
	if m := mountsUnder(t, other); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}
