package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
)

func TestEphemeralPublishUnpublish(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const id = "csi-0123abcd"
	target := filepath.Join(e.dir, "pods/web-0/volumes/tools/mount")
	if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil { // kubelet makes the parent
		t.Fatal(err)
	}
	req := e.ephemeralRequest(id, target)
	if _, err := e.client.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, filepath.Join(target, "etc/pod")), "shop/web-0 uid-1 builder on node-1 as "+id; got != want {
		t.Errorf("init file = %q, want %q", got, want)
	}
	if got := readFile(t, filepath.Join(target, "etc/os-release")); got != "layerset test\n" {
		t.Errorf("layer file = %q", got)
	}
	if err := os.WriteFile(filepath.Join(target, "written"), []byte("by the pod"), 0o644); err != nil {
		t.Fatal(err)
	}
	vol, err := e.store.Volume(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(vol.UpperDir(), "written")); got != "by the pod" {
		t.Errorf("upper holds %q", got)
	}
	// kubelet retries a publish it lost the answer to.
	if _, err := e.client.NodePublishVolume(ctx, req); err != nil {
		t.Fatalf("second publish: %v", err)
	}
	if n := len(mountsUnder(t, target)); n != 1 {
		t.Errorf("%d mounts at the target after a repeated publish, want 1", n)
	}
	ro := e.ephemeralRequest(id, target)
	ro.Readonly = true
	if _, err := e.client.NodePublishVolume(ctx, ro); status.Code(err) != codes.AlreadyExists {
		t.Errorf("publish again read-only: got %v, want AlreadyExists", err)
	}

	for range 2 { // the second is kubelet's retry
		if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	if exists(target) {
		t.Error("target directory still exists")
	}
	if _, err := e.store.Volume(id); !errors.Is(err, layers.ErrVolumeNotFound) {
		t.Errorf("store still has the volume: %v", err)
	}
	if exists(vol.Dir) || exists(vol.Dir+"-init") {
		t.Errorf("volume directories %s(-init) still exist", vol.Dir)
	}
	if m := mountsUnder(t, e.dir, e.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if rec, err := e.node.state.load(id); rec != nil || err != nil {
		t.Errorf("record left: %+v, %v", rec, err)
	}
}

func TestPersistentStagePublish(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	const id = "pv-data"
	staging := filepath.Join(e.dir, "plugins/globalmount")
	rw, ro := filepath.Join(e.dir, "pod-a/mount"), filepath.Join(e.dir, "pod-b/mount")

	stage := func() {
		t.Helper()
		if _, err := e.client.NodeStageVolume(ctx, e.stageRequest(id, staging)); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(target string, readOnly bool) {
		t.Helper()
		if _, err := e.client.NodePublishVolume(ctx, e.publishRequest(id, staging, target, readOnly)); err != nil {
			t.Fatal(err)
		}
	}
	unpublish := func(target string) {
		t.Helper()
		if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			t.Fatal(err)
		}
	}
	unstage := func() {
		t.Helper()
		if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Fatal(err)
		}
	}

	stage()
	stage() // idempotent
	if got, want := readFile(t, filepath.Join(staging, "etc/pod")), "/   on node-1 as "+id; got != want {
		t.Errorf("init file of a persistent volume = %q, want %q (no pod information at stage)", got, want)
	}
	publish(rw, false)
	publish(ro, true)
	publish(ro, true) // idempotent
	if err := os.WriteFile(filepath.Join(rw, "data"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(ro, "data")); got != "kept" {
		t.Errorf("read-only target sees %q", got)
	}
	err := os.WriteFile(filepath.Join(ro, "x"), []byte("no"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write to the read-only target: %v, want EROFS", err)
	}
	if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("unstage while published: %v, want FailedPrecondition", err)
	}
	unpublish(rw)
	unpublish(ro)
	unstage()
	unstage() // idempotent
	for _, p := range []string{rw, ro, staging} {
		if exists(p) {
			t.Errorf("%s still exists", p)
		}
	}
	if m := mountsUnder(t, e.dir, e.root); len(m) > 0 {
		t.Errorf("mounts left after unstage: %v", m)
	}
	vol, err := e.store.Volume(id)
	if err != nil {
		t.Fatalf("the upper of an unstaged persistent volume is gone: %v", err)
	}
	if got := readFile(t, filepath.Join(vol.UpperDir(), "data")); got != "kept" {
		t.Errorf("upper holds %q after unstage", got)
	}

	stage()
	publish(rw, false)
	if got := readFile(t, filepath.Join(rw, "data")); got != "kept" {
		t.Errorf("after staging again the volume holds %q, want the data written before", got)
	}
	unpublish(rw)
	unstage()
	if m := mountsUnder(t, e.dir, e.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
}

func TestArgumentValidation(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	target, staging := filepath.Join(e.dir, "t"), filepath.Join(e.dir, "s")
	ephemeral := func(mut func(*csi.NodePublishVolumeRequest)) error {
		r := e.ephemeralRequest("v1", target)
		mut(r)
		_, err := e.client.NodePublishVolume(ctx, r)
		return err
	}
	stage := func(mut func(*csi.NodeStageVolumeRequest)) error {
		r := e.stageRequest("v1", staging)
		mut(r)
		_, err := e.client.NodeStageVolume(ctx, r)
		return err
	}
	block := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	tests := []struct {
		name string
		call func() error
		code codes.Code
		msg  string
	}{
		{"publish: no volume id", func() error { return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "" }) }, codes.InvalidArgument, "volume_id"},
		{"publish: no target", func() error { return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "" }) }, codes.InvalidArgument, "target_path"},
		{"publish: relative target", func() error { return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "rel/t" }) }, codes.InvalidArgument, "absolute"},
		{"publish: no capability", func() error { return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = nil }) }, codes.InvalidArgument, "capability"},
		{"publish: block", func() error { return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = block }) }, codes.InvalidArgument, "block"},
		{"publish: no access mode", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability.AccessMode = nil })
		}, codes.InvalidArgument, "access mode"},
		{"publish: no LayerSet", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { delete(r.VolumeContext, names.ContextLayerSet) })
		}, codes.InvalidArgument, names.ContextLayerSet},
		{"publish: unknown LayerSet", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[names.ContextLayerSet] = "no-such-set" })
		}, codes.FailedPrecondition, `"no-such-set"`},
		{"publish: persistent, not staged", func() error {
			_, err := e.client.NodePublishVolume(ctx, e.publishRequest("v1", staging, target, false))
			return err
		}, codes.FailedPrecondition, "not staged"},
		{"publish: persistent, no staging path", func() error {
			_, err := e.client.NodePublishVolume(ctx, e.publishRequest("v1", "", target, false))
			return err
		}, codes.FailedPrecondition, "staging_target_path"},
		{"stage: no volume id", func() error { return stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeId = "" }) }, codes.InvalidArgument, "volume_id"},
		{"stage: no staging path", func() error { return stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "" }) }, codes.InvalidArgument, "staging_target_path"},
		{"stage: no capability", func() error { return stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nil }) }, codes.InvalidArgument, "capability"},
		{"stage: block", func() error { return stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = block }) }, codes.InvalidArgument, "block"},
		{"stage: no LayerSet", func() error { return stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeContext = nil }) }, codes.InvalidArgument, names.ContextLayerSet},
		{"stage: unknown LayerSet", func() error {
			return stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeContext[names.ContextLayerSet] = "missing-set" })
		}, codes.FailedPrecondition, `"missing-set"`},
		{"unpublish: no volume id", func() error {
			_, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{TargetPath: target})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"unpublish: no target", func() error {
			_, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v1"})
			return err
		}, codes.InvalidArgument, "target_path"},
		{"unstage: no volume id", func() error {
			_, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{StagingTargetPath: staging})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"unstage: no staging path", func() error {
			_, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v1"})
			return err
		}, codes.InvalidArgument, "staging_target_path"},
		{"stats: no volume id", func() error {
			_, err := e.client.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumePath: target})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"stats: no volume path", func() error {
			_, err := e.client.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "v1"})
			return err
		}, codes.InvalidArgument, "volume_path"},
		{"stats: unknown volume", func() error {
			_, err := e.client.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: "nope", VolumePath: "some/path"})
			return err
		}, codes.NotFound, "nope"},
		{"health: unknown volume", func() error {
			_, err := e.client.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: "nope"})
			return err
		}, codes.NotFound, "nope"},
		{"publish: size not a quantity", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[names.ContextSize] = "ten gigs" })
		}, codes.InvalidArgument, `size "ten gigs"`},
		{"publish: size zero", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[names.ContextSize] = "0" })
		}, codes.InvalidArgument, "positive"},
		{"publish: size too small", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[names.ContextSize] = "4Ki" })
		}, codes.InvalidArgument, "smallest size, 1Mi"},
		{"publish: size too large", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[names.ContextSize] = "2Pi" })
		}, codes.InvalidArgument, "largest size, 1Pi"},
		{"publish: deprecated size not a quantity", func() error {
			return ephemeral(func(r *csi.NodePublishVolumeRequest) { r.VolumeContext[names.ContextUpperSizeHint] = "big" })
		}, codes.InvalidArgument, names.ContextUpperSizeHint},
		{"stage: size negative", func() error {
			return stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeContext[names.ContextSize] = "-1Gi" })
		}, codes.InvalidArgument, "positive"},
		{"expand: no volume id", func() error {
			_, err := e.client.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumePath: target, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
			return err
		}, codes.InvalidArgument, "volume_id"},
		{"expand: unknown volume", func() error {
			_, err := e.client.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "nope", VolumePath: target,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
			return err
		}, codes.NotFound, "nope"},
		{"expand: unknown volume, relative path, no capacity", func() error {
			_, err := e.client.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: "nope", VolumePath: "some/path"})
			return err
		}, codes.NotFound, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if s, _ := status.FromError(err); s.Code() != tt.code || !strings.Contains(s.Message(), tt.msg) {
				t.Fatalf("got %v, want %v mentioning %q", err, tt.code, tt.msg)
			}
		})
	}
	// Failed publishes and stages leave nothing behind.
	if exists(target) || exists(staging) {
		t.Error("a failed call left its target or staging directory")
	}
	if recs, _, _ := e.node.state.list(); len(recs) > 0 {
		t.Errorf("failed calls left records: %+v", recs)
	}
	// Unpublishing and unstaging what the node never had succeeds:
	// kubelet retries them after restarts.
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "v9", TargetPath: target}); err != nil {
		t.Errorf("unpublish unknown volume: %v", err)
	}
	if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "v9", StagingTargetPath: staging}); err != nil {
		t.Errorf("unstage unknown volume: %v", err)
	}
}

func TestNodeInfoAndCapabilities(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	info, err := e.client.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info.NodeId != testNode || info.AccessibleTopology.GetSegments()[names.TopologyKey] != testNode {
		t.Errorf("NodeGetInfo = %v", info)
	}
	caps, err := e.client.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range caps.Capabilities {
		got = append(got, c.GetRpc().GetType().String())
	}
	if want := "STAGE_UNSTAGE_VOLUME GET_VOLUME_STATS EXPAND_VOLUME GET_VOLUME_HEALTH SINGLE_NODE_MULTI_WRITER"; strings.Join(got, " ") != want {
		t.Errorf("capabilities %v, want %s", got, want)
	}
	pi, err := e.id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
	if err != nil || pi.Name != names.DriverName || pi.VendorVersion != "test" {
		t.Errorf("GetPluginInfo = %v, %v", pi, err)
	}
	pc, err := e.id.GetPluginCapabilities(ctx, &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pc.Capabilities {
		if c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE {
			t.Error("a node-only server reports the controller service")
		}
	}
	probe, err := e.id.Probe(ctx, &csi.ProbeRequest{})
	if err != nil || !probe.GetReady().GetValue() {
		t.Errorf("Probe = %v, %v", probe, err)
	}
}
