package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/pkg/layers"
)

// TestRecoverInterrupted rewrites records as a crash at each step would
// have left them, and checks what a new node service makes of them.
func TestRecoverInterrupted(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	path := func(p string) string { return filepath.Join(e.dir, p) }
	setPhase := func(id string, f func(*volumeRecord)) {
		t.Helper()
		rec, err := e.node.state.load(id)
		if err != nil || rec == nil {
			t.Fatalf("record of %s: %v", id, err)
		}
		f(rec)
		if err := e.node.state.save(rec); err != nil {
			t.Fatal(err)
		}
	}

	// Mounted, but the record was not updated: finished.
	if _, err := e.client.NodePublishVolume(ctx, e.ephemeralRequest("eph-mounted", path("a"))); err != nil {
		t.Fatal(err)
	}
	setPhase("eph-mounted", func(r *volumeRecord) { r.Phase = phasePublishing })
	// Never mounted: undone.
	if err := os.MkdirAll(path("c"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := e.node.state.save(&volumeRecord{ID: "eph-cut", Kind: kindEphemeral, LayerSet: testLayerSet, Phase: phasePublishing, MountPath: path("c")}); err != nil {
		t.Fatal(err)
	}
	// A persistent volume published twice; one bind is gone, the other's
	// record still says publishing.
	if _, err := e.client.NodeStageVolume(ctx, e.stageRequest("pv-b", path("b-stage"))); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{path("b1"), path("b2")} {
		if _, err := e.client.NodePublishVolume(ctx, e.publishRequest("pv-b", path("b-stage"), target, false)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(path("b1"), "data"), []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(path("b2"), 0); err != nil {
		t.Fatal(err)
	}
	setPhase("pv-b", func(r *volumeRecord) { r.setTarget(targetRecord{Path: path("b1"), Phase: phasePublishing}) })
	// A stage cut before anything was composed: forgotten.
	if err := e.node.state.save(&volumeRecord{ID: "pv-d", Kind: kindPersistent, LayerSet: testLayerSet, Phase: phaseStaging, MountPath: path("d")}); err != nil {
		t.Fatal(err)
	}
	// An unstage cut after its record was written: finished, upper kept.
	if _, err := e.client.NodeStageVolume(ctx, e.stageRequest("pv-e", path("e-stage"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path("e-stage"), "data"), []byte("e"), 0o644); err != nil {
		t.Fatal(err)
	}
	setPhase("pv-e", func(r *volumeRecord) { r.Phase = phaseUnstaging })

	n, err := New(ctx, e.node.cfg)
	if err != nil {
		t.Fatal(err)
	}
	load := func(id string) *volumeRecord {
		t.Helper()
		rec, err := n.state.load(id)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if rec := load("eph-mounted"); rec == nil || rec.Phase != phasePublished {
		t.Errorf("mounted inline volume: %+v, want published", rec)
	}
	if rec := load("eph-cut"); rec != nil || exists(path("c")) {
		t.Errorf("inline volume never mounted: record %+v, target exists %t; want both gone", rec, exists(path("c")))
	}
	rec := load("pv-b")
	if rec == nil || rec.Phase != phaseStaged || len(rec.Targets) != 1 || rec.Targets[0].Path != path("b1") || rec.Targets[0].Phase != phasePublished {
		t.Errorf("persistent volume with one bind gone: %+v, want staged with only %s published", rec, path("b1"))
	}
	if exists(path("b2")) {
		t.Error("the mount point of the lost bind is left")
	}
	if rec := load("pv-d"); rec != nil {
		t.Errorf("stage cut short: %+v, want forgotten", rec)
	}
	rec = load("pv-e")
	if rec == nil || rec.Phase != phaseUnstaged || exists(path("e-stage")) {
		t.Errorf("unstage cut short: %+v; staging path exists %t", rec, exists(path("e-stage")))
	}
	if vol, err := e.store.Volume("pv-e"); err != nil || readFile(t, filepath.Join(vol.UpperDir(), "data")) != "e" {
		t.Errorf("upper of pv-e: %v", err)
	}

	// The recovered service answers kubelet for everything.
	calls := []func() error{
		func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "eph-mounted", TargetPath: path("a")})
			return err
		},
		func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "pv-b", TargetPath: path("b1")})
			return err
		},
		func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "pv-b", TargetPath: path("b2")})
			return err
		},
		func() error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "pv-b", StagingTargetPath: path("b-stage")})
			return err
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if m := mountsUnder(t, e.dir, e.root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if _, err := e.store.Volume("eph-mounted"); !errors.Is(err, layers.ErrVolumeNotFound) {
		t.Errorf("inline volume's directories left: %v", err)
	}
}

// TestKill9 kills the plugin with SIGKILL twice, once in the middle of a
// publish and once with volumes in use, and checks that the restarted
// plugin answers every unpublish and unstage, keeps the persistent upper
// and leaves no mount behind.
func TestKill9(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	reg := newRegistry(t, true)
	root, dir := t.TempDir(), t.TempDir()
	t.Cleanup(func() { unmountUnder(t, dir, root) })
	p := newPlugin(t, reg, root, writeLayerSets(t, reg.image))
	ctx := context.Background()
	e := &env{} // for its request builders
	path := func(name string) string { return filepath.Join(dir, name) }

	// 1. Killed while a publish waits for its pull.
	p.start()
	client := p.client()
	published := make(chan error, 1)
	go func() {
		_, err := client.NodePublishVolume(ctx, e.ephemeralRequest("csi-cut", path("cut")))
		published <- err
	}()
	<-reg.stalled
	p.kill()
	if err := <-published; err == nil {
		t.Fatal("the publish the plugin was killed in succeeded")
	}
	reg.release()

	// 2. Restarted: volumes in use when it is killed again.
	p.start()
	client = p.client()
	if _, err := client.NodePublishVolume(ctx, e.ephemeralRequest("csi-eph", path("eph"))); err != nil {
		t.Fatalf("publish: %v\n%s", err, p.logs.String())
	}
	if _, err := client.NodeStageVolume(ctx, e.stageRequest("pv-data", path("stage"))); err != nil {
		t.Fatal(err)
	}
	if _, err := client.NodePublishVolume(ctx, e.publishRequest("pv-data", path("stage"), path("pv"), false)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(path("pv"), "data"), []byte("survives"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.kill()
	if got := mountsUnder(t, dir); !slices.Contains(got, path("pv")) || !slices.Contains(got, path("eph")) {
		t.Fatalf("mounts after kill -9: %v; the test needs them to outlive the plugin", got)
	}

	// 3. Restarted: kubelet cleans up.
	p.start()
	client = p.client()
	for _, r := range []*csi.NodeUnpublishVolumeRequest{
		{VolumeId: "csi-cut", TargetPath: path("cut")},
		{VolumeId: "csi-eph", TargetPath: path("eph")},
		{VolumeId: "pv-data", TargetPath: path("pv")},
	} {
		if _, err := client.NodeUnpublishVolume(ctx, r); err != nil {
			t.Errorf("unpublish %s: %v", r.VolumeId, err)
		}
	}
	if _, err := client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: "pv-data", StagingTargetPath: path("stage")}); err != nil {
		t.Errorf("unstage: %v", err)
	}
	if m := mountsUnder(t, dir, root); len(m) > 0 {
		t.Errorf("mounts left: %v", m)
	}
	if got, err := os.ReadFile(filepath.Join(root, "overlay2/vol-pv-data/diff/data")); string(got) != "survives" {
		t.Errorf("persistent upper after unstage: %q, %v", got, err)
	}
	for _, v := range []string{"vol-csi-eph", "vol-csi-cut"} {
		if exists(filepath.Join(root, "overlay2", v)) {
			t.Errorf("inline volume directory %s left", v)
		}
	}
	for _, p := range []string{"cut", "eph", "pv", "stage"} {
		if exists(path(p)) {
			t.Errorf("%s left", p)
		}
	}
	if t.Failed() {
		t.Logf("plugin logs:\n%s", p.logs.String())
	}
}
