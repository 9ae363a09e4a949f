package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"

	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// write writes a pod's changes into a staged volume: a new file in a new
// folder, a changed file of the image, a removed one, and the init file
// rewritten (which stays out of every commit).
func write(t *testing.T, staging string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(staging, "data"), 0o755))
	must(t, os.WriteFile(filepath.Join(staging, "data", "model.bin"), []byte("weights v1\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(staging, "etc", "os-release"), []byte("changed by the pod\n"), 0o644))
	must(t, os.Remove(filepath.Join(staging, "bin", "tool")))
	must(t, os.WriteFile(filepath.Join(staging, "etc", "volume"), []byte("rewritten\n"), 0o644))
}

func TestCreateSnapshot(t *testing.T) {
	e := newEnv(t)
	staging := e.stage("pvc-1", false)
	write(t, staging)
	before := time.Now().Add(-time.Second)

	snap := e.mustCreate("snapshot-1", "pvc-1", nil, nil)
	if !snap.GetReadyToUse() || snap.GetSourceVolumeId() != "pvc-1" {
		t.Errorf("snapshot %v: want ready, of pvc-1", snap)
	}
	if ct := snap.GetCreationTime().AsTime(); ct.Before(before) || ct.After(time.Now()) {
		t.Errorf("creation time %v is not the time of the call", ct)
	}
	// The restore size is the file content the layer holds: the new file
	// and the changed one (the init file is no part of it).
	if want := int64(len("weights v1\n") + len("changed by the pod\n")); snap.GetSizeBytes() != want {
		t.Errorf("size_bytes %d, want %d", snap.GetSizeBytes(), want)
	}
	if topo := snap.GetAccessibleTopology(); len(topo) != 1 || topo[0].GetSegments()[names.TopologyKey] != testNode {
		t.Errorf("accessible topology %v, want this node's", topo)
	}

	rec := e.record("snapshot-1")
	if !localIDPattern.MatchString(snap.GetSnapshotId()) || snap.GetSnapshotId() != rec.SnapshotID {
		t.Errorf("snapshot id %q (record %q) is no local id", snap.GetSnapshotId(), rec.SnapshotID)
	}
	diff, err := v1.NewHash(rec.Layer.DiffID)
	must(t, err)
	if want := diff.Hex[:idLayerHex] + "." + nameHash("snapshot-1")[:idNameHex] + "@" + testNode; snap.GetSnapshotId() != want {
		t.Errorf("snapshot id %q, want %q: it names the layer, the name and the node", snap.GetSnapshotId(), want)
	}
	if len(rec.Chain) != 1 || rec.Chain[0].DiffID != e.baseDiff.String() || !strings.HasPrefix(rec.Chain[0].Source, e.reg.Host) || rec.Chain[0].Kept {
		t.Errorf("chain %+v: want the image's layer, pulled from %s", rec.Chain, e.reg.Host)
	}
	if rec.Compression != "zstd" || rec.Layer.MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("compression %s, media type %s: want zstd by default", rec.Compression, rec.Layer.MediaType)
	}

	// The layer is in the store, with what the pod wrote and nothing
	// else: a whiteout for the removed file, no init file.
	if !e.store.HasLayer(diff) {
		t.Fatalf("layer %s is not in the store", diff)
	}
	dir := e.layerDir(rec.Layer.DiffID)
	if b, err := os.ReadFile(filepath.Join(dir, "data", "model.bin")); err != nil || string(b) != "weights v1\n" {
		t.Errorf("data/model.bin in the layer: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "os-release")); err != nil || string(b) != "changed by the pod\n" {
		t.Errorf("etc/os-release in the layer: %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "bin", "tool")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("bin/tool in the layer: %v, %v; want a whiteout", fi, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "etc", "volume")); err == nil {
		t.Error("the init file is in the committed layer")
	}
	// Its blob is kept beside the record, so the snapshot outlives the
	// layer's garbage collection.
	digest, err := v1.NewHash(rec.Layer.Digest)
	must(t, err)
	if _, err := os.Stat(filepath.Join(e.snaps.records.blobDir("snapshot-1"), digest.Hex)); err != nil {
		t.Errorf("blob of the snapshot's layer not kept: %v", err)
	}

	// Asked again: the same snapshot, not a second commit.
	if again := e.mustCreate("snapshot-1", "pvc-1", nil, nil); again.GetSnapshotId() != snap.GetSnapshotId() ||
		!again.GetCreationTime().AsTime().Equal(snap.GetCreationTime().AsTime()) {
		t.Errorf("same name and source: %v, want %v", again, snap)
	}
	_, err = e.create("snapshot-1", "pvc-2", nil, nil)
	wantCode(t, err, codes.AlreadyExists, "same name, other source")
	_, err = e.create("snapshot-1", "pvc-1", map[string]string{ParamCompression: "gzip"}, nil)
	wantCode(t, err, codes.AlreadyExists, "same name, other compression")

	// A second snapshot of the unchanged volume has the same layer, and
	// an id of its own.
	other := e.mustCreate("snapshot-2", "pvc-1", map[string]string{"csi.storage.k8s.io/volumesnapshot/name": "nightly"}, nil)
	if other.GetSnapshotId() == snap.GetSnapshotId() || e.record("snapshot-2").Layer.DiffID != rec.Layer.DiffID {
		t.Errorf("second snapshot %s (layer %s) of an unchanged volume: want its own id, the same layer %s",
			other.GetSnapshotId(), e.record("snapshot-2").Layer.DiffID, rec.Layer.DiffID)
	}

	// An unstaged volume keeps its upper, and is snapshotted from it.
	e.unstage("pvc-1", staging)
	kept := e.mustCreate("snapshot-3", "pvc-1", map[string]string{ParamCompression: "gzip"}, nil)
	if r := e.record("snapshot-3"); r.Layer.DiffID != rec.Layer.DiffID || r.Layer.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("snapshot of the unstaged volume: layer %s (%s), want %s in gzip", r.Layer.DiffID, r.Layer.MediaType, rec.Layer.DiffID)
	}
	if kept.GetSizeBytes() != snap.GetSizeBytes() {
		t.Errorf("size of the unstaged volume's snapshot %d, want %d", kept.GetSizeBytes(), snap.GetSizeBytes())
	}
}

func TestCreateSnapshotRefusals(t *testing.T) {
	e := newEnv(t)
	e.stage("pvc-ro", true)
	staging := e.stage("pvc-1", false)
	target := filepath.Join(e.dir, "inline", "mount")
	_, err := e.node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: "csi-inline", TargetPath: target, VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER),
		VolumeContext: map[string]string{names.ContextLayerSet: testLayerSet, names.ContextEphemeral: "true"},
	})
	must(t, err)

	for _, tc := range []struct {
		what           string
		name, source   string
		params, secret map[string]string
		topology       *csi.TopologyRequirement
		code           codes.Code
	}{
		{what: "no name", source: "pvc-1", code: codes.InvalidArgument},
		{what: "no source", name: "s", code: codes.InvalidArgument},
		{what: "unknown parameter", name: "s", source: "pvc-1", params: map[string]string{"repo": "x"}, code: codes.InvalidArgument},
		{what: "bad compression", name: "s", source: "pvc-1", params: map[string]string{ParamCompression: "lz4"}, code: codes.InvalidArgument},
		{what: "repository without registry", name: "s", source: "pvc-1", params: map[string]string{ParamRepository: "snapshots"}, code: codes.InvalidArgument},
		{what: "repository with a tag", name: "s", source: "pvc-1", params: map[string]string{ParamRepository: "registry.example/snapshots:v1"}, code: codes.InvalidArgument},
		{what: "repository too long", name: "s", source: "pvc-1",
			params: map[string]string{ParamRepository: "registry.example/" + strings.Repeat("a", MaxRepositoryBytes)}, code: codes.InvalidArgument},
		{what: "unknown secret key", name: "s", source: "pvc-1", params: map[string]string{ParamRepository: "registry.example/snapshots"},
			secret: map[string]string{"token": "s3cr3t-value"}, code: codes.InvalidArgument},
		{what: "username without password", name: "s", source: "pvc-1", params: map[string]string{ParamRepository: "registry.example/snapshots"},
			secret: map[string]string{SecretUsername: "s3cr3t-value"}, code: codes.InvalidArgument},
		{what: "another node's topology", name: "s", source: "pvc-1",
			topology: &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{names.TopologyKey: "node-2"}}}},
			code:     codes.ResourceExhausted},
		{what: "unknown volume", name: "s", source: "pvc-none", code: codes.NotFound},
		{what: "inline ephemeral volume", name: "s", source: "csi-inline", code: codes.InvalidArgument},
		{what: "read-only volume", name: "s", source: "pvc-ro", code: codes.FailedPrecondition},
	} {
		_, err := e.ctrl.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{
			Name: tc.name, SourceVolumeId: tc.source, Parameters: tc.params, Secrets: tc.secret, AccessibilityRequirements: tc.topology,
		})
		wantCode(t, err, tc.code, tc.what)
		if tc.secret != nil && err != nil && strings.Contains(err.Error(), "s3cr3t-value") {
			t.Errorf("%s: the error shows a secret's value: %v", tc.what, err)
		}
	}
	// This node's topology is fine.
	_, err = e.ctrl.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: "pvc-1",
		AccessibilityRequirements: &csi.TopologyRequirement{Requisite: []*csi.Topology{{Segments: map[string]string{names.TopologyKey: testNode}}}}})
	must(t, err)
	if recs, err := e.snaps.records.list(); err != nil || len(recs) != 1 {
		t.Errorf("records after the refusals: %d, %v; want the one snapshot made", len(recs), err)
	}
	e.unstage("pvc-1", staging)
}

func TestListSnapshots(t *testing.T) {
	e := newEnv(t)
	e.stage("pvc-a", false)
	staging := e.stage("pvc-b", false)
	must(t, os.WriteFile(filepath.Join(staging, "b"), []byte("b\n"), 0o644))
	var all []string
	for i, src := range []string{"pvc-a", "pvc-a", "pvc-b", "pvc-b", "pvc-b"} {
		all = append(all, e.mustCreate("snap-"+string(rune('0'+i)), src, nil, nil).GetSnapshotId())
	}
	slices.Sort(all)
	if got := e.ids(&csi.ListSnapshotsRequest{}); !slices.Equal(got, all) {
		t.Errorf("all snapshots %q, want %q in id order", got, all)
	}
	if got := e.ids(&csi.ListSnapshotsRequest{SnapshotId: all[3]}); !slices.Equal(got, all[3:4]) {
		t.Errorf("by id: %q", got)
	}
	for _, req := range []*csi.ListSnapshotsRequest{
		{SnapshotId: "none"},
		{SnapshotId: strings.Repeat("0", 24) + "." + strings.Repeat("0", 16) + "@" + testNode},
		{SourceVolumeId: "pvc-none"},
		{SnapshotId: all[0], SourceVolumeId: "pvc-none"},
	} {
		if got := e.ids(req); len(got) != 0 {
			t.Errorf("ListSnapshots(%v) = %q, want none", req, got)
		}
	}
	var ofB int
	for _, en := range e.list(&csi.ListSnapshotsRequest{SourceVolumeId: "pvc-b"}).GetEntries() {
		if en.GetSnapshot().GetSourceVolumeId() != "pvc-b" || !en.GetSnapshot().GetReadyToUse() {
			t.Errorf("by source volume: %v", en.GetSnapshot())
		}
		ofB++
	}
	if ofB != 3 {
		t.Errorf("%d snapshots of pvc-b listed, want 3", ofB)
	}

	// Pages of two, each starting after the last id of the one before.
	var paged []string
	token := ""
	for pages := 0; ; pages++ {
		resp := e.list(&csi.ListSnapshotsRequest{MaxEntries: 2, StartingToken: token})
		for _, en := range resp.GetEntries() {
			paged = append(paged, en.GetSnapshot().GetSnapshotId())
		}
		if token = resp.GetNextToken(); token == "" {
			break
		}
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if !slices.Equal(paged, all) {
		t.Errorf("paged %q, want %q", paged, all)
	}
	resp := e.list(&csi.ListSnapshotsRequest{MaxEntries: 2})
	if rest := e.ids(&csi.ListSnapshotsRequest{StartingToken: resp.GetNextToken()}); !slices.Equal(rest, all[2:]) {
		t.Errorf("after the first page: %q, want %q", rest, all[2:])
	}
	_, err := e.ctrl.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{StartingToken: "bogus"})
	wantCode(t, err, codes.Aborted, "a token this plugin never gave")
	_, err = e.ctrl.ListSnapshots(context.Background(), &csi.ListSnapshotsRequest{MaxEntries: -1})
	wantCode(t, err, codes.InvalidArgument, "negative max_entries")

	// A restarted plugin lists the same snapshots, with the same times.
	before := e.list(&csi.ListSnapshotsRequest{})
	e.restart()
	after := e.list(&csi.ListSnapshotsRequest{})
	if len(after.GetEntries()) != len(before.GetEntries()) {
		t.Fatalf("after a restart %d snapshots, before %d", len(after.GetEntries()), len(before.GetEntries()))
	}
	for i := range after.GetEntries() {
		a, b := after.GetEntries()[i].GetSnapshot(), before.GetEntries()[i].GetSnapshot()
		if a.GetSnapshotId() != b.GetSnapshotId() || !a.GetCreationTime().AsTime().Equal(b.GetCreationTime().AsTime()) || a.GetSizeBytes() != b.GetSizeBytes() {
			t.Errorf("after a restart %v, before %v", a, b)
		}
	}
	if again := e.mustCreate("snap-0", "pvc-a", nil, nil); !slices.Contains(all, again.GetSnapshotId()) {
		t.Errorf("snap-0 asked again after a restart: %s, a new snapshot", again.GetSnapshotId())
	}
}

func TestDeleteSnapshot(t *testing.T) {
	e := newEnv(t)
	staging := e.stage("pvc-1", false)
	write(t, staging)
	snap := e.mustCreate("snapshot-1", "pvc-1", nil, nil)
	rec := e.record("snapshot-1")
	diff, err := v1.NewHash(rec.Layer.DiffID)
	must(t, err)

	_, err = e.ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{})
	wantCode(t, err, codes.InvalidArgument, "no snapshot id")
	for _, id := range []string{"reallyfakesnapshotid", strings.Repeat("a", 24) + "." + strings.Repeat("b", 16) + "@" + testNode, "registry.example/x@sha256:" + strings.Repeat("c", 64)} {
		if _, err := e.ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: id}); err != nil {
			t.Errorf("deleting unknown snapshot %s: %v", id, err)
		}
	}

	// A volume restored from the snapshot: the chain with the committed
	// layer on top, its own empty upper.
	restored := filepath.Join(e.dir, "restored")
	_, err = e.store.Mount(context.Background(), layers.VolumeSpec{ID: "pvc-restored", Layers: []v1.Hash{e.baseDiff, diff}, Target: restored})
	must(t, err)
	if b, err := os.ReadFile(filepath.Join(restored, "data", "model.bin")); err != nil || string(b) != "weights v1\n" {
		t.Errorf("restored volume: data/model.bin %q, %v", b, err)
	}

	for range 2 { // idempotent
		if _, err := e.ctrl.DeleteSnapshot(context.Background(), &csi.DeleteSnapshotRequest{SnapshotId: snap.GetSnapshotId()}); err != nil {
			t.Fatalf("DeleteSnapshot: %v", err)
		}
	}
	if got := e.ids(&csi.ListSnapshotsRequest{}); len(got) != 0 {
		t.Errorf("after deletion: %q listed", got)
	}
	if _, err := os.Stat(e.snaps.records.blobDir("snapshot-1")); !os.IsNotExist(err) {
		t.Errorf("the snapshot's blobs are left: %v", err)
	}
	// The restored volume keeps the layer from garbage collection ...
	if _, err := e.store.GC(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	if !e.store.HasLayer(diff) {
		t.Fatal("garbage collection removed the layer of a deleted snapshot a volume still uses")
	}
	// ... until it is gone.
	must(t, e.store.Unmount(context.Background(), "pvc-restored", layers.RemoveUpper))
	if _, err := e.store.GC(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	if e.store.HasLayer(diff) {
		t.Error("the layer of a deleted snapshot no volume uses outlived garbage collection")
	}
	e.unstage("pvc-1", staging)
}

// A snapshot outlives the removal of its layer from the store: its blob
// stays, for a restore to import the layer from again.
func TestSnapshotOutlivesGC(t *testing.T) {
	e := newEnv(t)
	staging := e.stage("pvc-1", false)
	write(t, staging)
	e.mustCreate("snapshot-1", "pvc-1", nil, nil)
	rec := e.record("snapshot-1")
	if _, err := e.store.GC(context.Background(), 0, nil); err != nil {
		t.Fatal(err)
	}
	diff, err := v1.NewHash(rec.Layer.DiffID)
	must(t, err)
	if e.store.HasLayer(diff) {
		t.Fatal("test needs the unused layer collected")
	}
	digest, err := v1.NewHash(rec.Layer.Digest)
	must(t, err)
	blob := layers.Blob{DiffID: diff, Digest: digest, Size: rec.Layer.Size, Path: filepath.Join(e.snaps.records.blobDir("snapshot-1"), digest.Hex)}
	r, err := blob.Open()
	must(t, err)
	n, err := r.Read(make([]byte, rec.Layer.Size+1))
	if err != nil && err.Error() != "EOF" || int64(n) != rec.Layer.Size {
		t.Errorf("kept blob: read %d bytes, %v; want %d, its digest checked", n, err, rec.Layer.Size)
	}
	check(t, r.Close())
	if got := e.ids(&csi.ListSnapshotsRequest{}); len(got) != 1 {
		t.Errorf("after garbage collection: %q listed", got)
	}
	e.unstage("pvc-1", staging)
}

// A volume this node never composed holds nothing written yet: its
// snapshot is its LayerSet's chain with an empty layer, committed from a
// private volume that is gone afterwards.
func TestSnapshotOfVolumeNeverComposed(t *testing.T) {
	e := newEnv(t)
	e.lookup["pvc-new"] = VolumeInfo{Exists: true, LayerSet: testLayerSet}
	e.lookup["pvc-rox"] = VolumeInfo{Exists: true, LayerSet: testLayerSet, ReadOnly: true}
	snap := e.mustCreate("snapshot-new", "pvc-new", nil, nil)
	rec := e.record("snapshot-new")
	if len(rec.Chain) != 1 || rec.Chain[0].DiffID != e.baseDiff.String() || rec.LayerSet != testLayerSet || snap.GetSizeBytes() != 0 {
		t.Errorf("snapshot of a volume never composed: chain %+v, LayerSet %q, size %d; want the LayerSet's chain, size 0",
			rec.Chain, rec.LayerSet, snap.GetSizeBytes())
	}
	if entries, err := os.ReadDir(e.layerDir(rec.Layer.DiffID)); err != nil || len(entries) != 0 {
		t.Errorf("the committed layer of an empty volume holds %d entries (%v)", len(entries), err)
	}
	vols, err := e.store.Volumes()
	must(t, err)
	for _, v := range vols {
		t.Errorf("volume %s left in the store", v.ID)
	}
	_, err = e.create("snapshot-rox", "pvc-rox", nil, nil)
	wantCode(t, err, codes.FailedPrecondition, "a read-only volume never composed")
}

// A commit and the node calls that mount or unmount its volume exclude
// each other.
func TestGuard(t *testing.T) {
	e := newEnv(t)
	staging := e.stage("pvc-1", false)
	release, err := e.snaps.slots.exclusive("pvc-1")
	must(t, err)
	_, err = e.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: "pvc-1", StagingTargetPath: staging})
	wantCode(t, err, codes.Aborted, "unstage during a commit")
	_, err = e.create("snapshot-1", "pvc-1", nil, nil)
	wantCode(t, err, codes.Aborted, "a second commit of the volume")
	release()

	held, err := e.snaps.slots.shared("pvc-1")
	must(t, err)
	_, err = e.create("snapshot-1", "pvc-1", nil, nil)
	wantCode(t, err, codes.Aborted, "a commit during a node call")
	held()
	e.mustCreate("snapshot-1", "pvc-1", nil, nil)
	e.unstage("pvc-1", staging)

	// The plugin says it serves snapshots, and that they are node-local.
	caps, err := e.ctrl.ControllerGetCapabilities(context.Background(), &csi.ControllerGetCapabilitiesRequest{})
	must(t, err)
	var rpcs []string
	for _, c := range caps.GetCapabilities() {
		rpcs = append(rpcs, c.GetRpc().GetType().String())
	}
	if !slices.Equal(rpcs, []string{"CREATE_DELETE_SNAPSHOT", "LIST_SNAPSHOTS"}) {
		t.Errorf("controller capabilities %q", rpcs)
	}
	plugin, err := e.id.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	must(t, err)
	var services []string
	for _, c := range plugin.GetCapabilities() {
		if s := c.GetService(); s != nil {
			services = append(services, s.GetType().String())
		}
	}
	for _, want := range []string{"CONTROLLER_SERVICE", "SNAPSHOT_ACCESSIBILITY_CONSTRAINTS"} {
		if !slices.Contains(services, want) {
			t.Errorf("plugin capabilities %q lack %s", services, want)
		}
	}
	_, err = e.ctrl.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: "v"})
	wantCode(t, err, codes.Unimplemented, "CreateVolume on the node")
}

// A snapshot of a volume whose chain holds a committed layer (one restored
// from an earlier snapshot) keeps that layer's blob too: no registry has
// it.
func TestKeepBlobsOfCommittedChain(t *testing.T) {
	e := newEnv(t)
	staging := e.stage("pvc-1", false)
	write(t, staging)
	e.mustCreate("first", "pvc-1", nil, nil)
	first := mustHash(t, e.record("first").Layer.DiffID)

	restored := filepath.Join(e.dir, "restored")
	_, err := e.store.Mount(context.Background(), layers.VolumeSpec{ID: "pvc-restored", Layers: []v1.Hash{e.baseDiff, first}, Target: restored})
	must(t, err)
	must(t, os.WriteFile(filepath.Join(restored, "second"), []byte("2\n"), 0o644))
	res, err := e.store.Commit(context.Background(), "pvc-restored", layers.CommitOptions{})
	must(t, err)
	rec := &snapshotRecord{Name: "second"}
	must(t, e.snaps.keepBlobs(res, rec))
	if len(rec.Chain) != 2 || rec.Chain[0].Kept || !rec.Chain[1].Kept || rec.Chain[1].DiffID != first.String() {
		t.Fatalf("chain %+v: want the pulled layer by its source, the committed one kept", rec.Chain)
	}
	for _, l := range []chainLayer{rec.Chain[1], rec.Layer} {
		d := mustHash(t, l.Digest)
		if _, err := os.Stat(filepath.Join(e.snaps.records.blobDir("second"), d.Hex)); err != nil {
			t.Errorf("blob of layer %s not kept: %v", l.DiffID, err)
		}
	}
	if res.Layer.Path != filepath.Join(e.snaps.records.blobDir("second"), res.Layer.Digest.Hex) {
		t.Errorf("the committed layer's blob is read from %s, not the snapshot's copy", res.Layer.Path)
	}
	must(t, e.store.Unmount(context.Background(), "pvc-restored", layers.RemoveUpper))
	e.unstage("pvc-1", staging)
}
