package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestVolumeStatsAndHealth(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const id = "csi-stats"
	target := filepath.Join(e.dir, "mount")
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest(id, target)); err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	if err := os.WriteFile(filepath.Join(target, "big"), bytes.Repeat([]byte{1}, mib), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(target, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "dir/small"), []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(target, "big"), filepath.Join(target, "dir/big-again")); err != nil {
		t.Fatal(err)
	}

	stats, err := e.client.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(e.store.Dir(), &st); err != nil {
		t.Fatal(err)
	}
	for _, u := range stats.Usage {
		switch u.Unit {
		case csi.VolumeUsage_BYTES:
			// The layers below are shared and not counted; the hard
			// link counts once.
			if u.Used != mib+10 {
				t.Errorf("bytes used = %d, want %d", u.Used, mib+10)
			}
			if u.Total != int64(st.Blocks)*int64(st.Bsize) || u.Available <= 0 || u.Available > u.Total {
				t.Errorf("bytes total %d available %d; statfs says %d total", u.Total, u.Available, int64(st.Blocks)*int64(st.Bsize))
			}
		case csi.VolumeUsage_INODES:
			if u.Used != 3 { // big, dir, dir/small
				t.Errorf("inodes used = %d, want 3", u.Used)
			}
			if u.Total != int64(st.Files) {
				t.Errorf("inodes total %d, statfs says %d", u.Total, st.Files)
			}
		}
	}
	if len(stats.Usage) != 2 {
		t.Errorf("usage has %d entries, want bytes and inodes", len(stats.Usage))
	}
	_, err = e.client.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: filepath.Join(e.dir, "elsewhere")})
	if status.Code(err) != codes.NotFound {
		t.Errorf("stats at a path the volume is not at: %v, want NotFound", err)
	}

	health, err := e.client.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: target})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(health.VolumeHealth.GetHealthStatuses()); n != 0 {
		t.Errorf("a mounted volume reports %d health problems: %v", n, health)
	}
	// Unmounted behind the plugin's back.
	if err := unix.Unmount(target, 0); err != nil {
		t.Fatal(err)
	}
	health, err = e.client.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: id})
	if err != nil {
		t.Fatal(err)
	}
	hs := health.VolumeHealth.GetHealthStatuses()
	if len(hs) != 1 || hs[0].Status != csi.VolumeHealthErrorType_INACCESSIBLE || hs[0].Reason != reasonNotMounted || !bytes.Contains([]byte(hs[0].Message), []byte(target)) {
		t.Errorf("health of an unmounted volume = %v, want INACCESSIBLE/%s naming %s", hs, reasonNotMounted, target)
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if exists(target) {
		t.Error("target left")
	}
}
