package node

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func mountOptionsAt(t *testing.T, path string) []string {
	t.Helper()
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (bool, bool) { return i.Mountpoint != path, false })
	if err != nil || len(infos) == 0 {
		t.Fatalf("no mount at %s: %v", path, err)
	}
	return strings.Split(infos[len(infos)-1].Options, ",")
}

// Volumes are mounted nosuid,nodev; the capability's mount flags add to
// that, the binds of a persistent volume keep it, and an unknown or
// loosening flag is refused before anything is mounted.
func TestMountFlags(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	mk := func(name string) string {
		p := filepath.Join(e.dir, name, "mount")
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		return p
	}
	has := func(what, path string, want ...string) {
		t.Helper()
		opts := mountOptionsAt(t, path)
		for _, w := range want {
			if !slices.Contains(opts, w) {
				t.Errorf("%s: mount options %v lack %s", what, opts, w)
			}
		}
	}

	plain := mk("plain")
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest("csi-plain", plain)); err != nil {
		t.Fatal(err)
	}
	has("inline volume", plain, "nosuid", "nodev")

	noexec := mk("noexec")
	req := e.ephemeralRequest("csi-noexec", noexec)
	req.VolumeCapability.GetMount().MountFlags = []string{"noexec", "noatime"}
	if _, err := e.client.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	has("inline volume with mount flags", noexec, "nosuid", "nodev", "noexec", "noatime")

	for _, bad := range []string{"suid", "dev", "uid=0", "nosiud"} {
		target := mk("bad-" + bad)
		req := e.ephemeralRequest("csi-bad", target)
		req.VolumeCapability.GetMount().MountFlags = []string{bad}
		if _, err := e.client.NodePublishVolume(ctx, req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), bad) {
			t.Errorf("mount flag %q: %v, want InvalidArgument naming it", bad, err)
		}
		if m := mountsUnder(t, target); len(m) > 0 {
			t.Errorf("mount flag %q: mounted anyway at %v", bad, m)
		}
	}

	staging, target := filepath.Join(e.dir, "staging"), mk("pv")
	if err := os.MkdirAll(staging, 0o750); err != nil {
		t.Fatal(err)
	}
	stage := e.stageRequest("pv-flags", staging)
	stage.VolumeCapability.GetMount().MountFlags = []string{"noexec"}
	if _, err := e.client.NodeStageVolume(ctx, stage); err != nil {
		t.Fatal(err)
	}
	has("staged volume", staging, "nosuid", "nodev", "noexec")
	if _, err := e.client.NodePublishVolume(ctx, e.publishRequest("pv-flags", staging, target, true)); err != nil {
		t.Fatal(err)
	}
	has("bind of a staged volume", target, "ro", "nosuid", "nodev", "noexec")

	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "pv-flags", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "pv-flags", StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	for _, v := range [][2]string{{"csi-plain", plain}, {"csi-noexec", noexec}} {
		if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v[0], TargetPath: v[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if m := mountsUnder(t, e.dir, e.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}
