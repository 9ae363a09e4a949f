package snapshot

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	csinode "github.com/layerset/layerset-csi/pkg/csi/node"
	"github.com/layerset/layerset-csi/pkg/csi/server"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/quota"
	"github.com/layerset/layerset-csi/pkg/source"
)

const (
	testNode     = "node-1"
	testLayerSet = "tools"
)

// env is the node plugin as `node --snapshots` serves it: the node
// service (guarded) and the snapshot service on one real unix socket,
// over a real store whose LayerSet's image is in a test registry.
type env struct {
	t        *testing.T
	reg      *testimage.Registry
	image    string  // the LayerSet's image, pinned
	baseDiff v1.Hash // its one layer
	root     string
	dir      string // staging paths and targets
	store    *layers.Store
	cat      catalog.Catalog
	snaps    *Server
	node     csi.NodeClient
	ctrl     csi.ControllerClient
	id       csi.IdentityClient
	lookup   map[string]VolumeInfo // what Config.Lookup knows
	stop     func()
	opts     source.Options
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the node service mounts overlayfs")
	}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	e := &env{t: t, root: t.TempDir(), dir: t.TempDir(), lookup: map[string]VolumeInfo{}}
	t.Cleanup(func() { unmountUnder(t, e.dir, e.root) })
	e.reg = testimage.NewRegistry(t)
	l, err := testimage.Layer([]testimage.Entry{
		testimage.Dir("etc"),
		testimage.File("etc/os-release", "layerset test\n"),
		testimage.File("bin/tool", "#!/bin/sh\necho tool\n"),
	}, testimage.Gzip)
	must(t, err)
	e.baseDiff, err = l.DiffID()
	must(t, err)
	img, err := testimage.Image(l)
	must(t, err)
	e.image = e.reg.Push(t, "tools:v1", img)
	e.opts = source.Options{Insecure: []string{e.reg.Host}}

	layerSets := t.TempDir()
	must(t, os.WriteFile(filepath.Join(layerSets, testLayerSet+".yaml"), fmt.Appendf(nil, `apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: %s}
spec:
  layers: [{image: %q}]
  init: {files: [{path: etc/volume, template: "{{.VolumeID}}"}]}
`, testLayerSet, e.image), 0o644))
	ctx := context.Background()
	e.store, err = layers.Open(ctx, layers.Options{Root: e.root, NoSync: true, Quota: quota.Options{Mode: quota.ModeOff}})
	must(t, err)
	dir, err := catalog.NewDir(ctx, layerSets, e.opts)
	must(t, err)
	t.Cleanup(func() { check(t, dir.Close()) })
	e.cat = dir
	e.start()
	return e
}

// start serves the plugin; restart stops it and serves it again on the
// same root, as a restarted plugin would.
func (e *env) start() {
	t := e.t
	ctx, cancel := context.WithCancel(context.Background())
	stateDir := filepath.Join(e.root, "csi")
	node, err := csinode.New(ctx, csinode.Config{NodeID: testNode, StateDir: stateDir, Store: e.store, Catalog: e.cat})
	must(t, err)
	e.snaps, err = New(ctx, Config{NodeID: testNode, StateDir: stateDir, Store: e.store, Catalog: e.cat, Source: e.opts,
		Lookup: func(_ context.Context, id string) (VolumeInfo, error) { return e.lookup[id], nil }})
	must(t, err)
	sockDir, err := os.MkdirTemp("", "lsnap") // short: unix socket paths are limited to 108 bytes
	must(t, err)
	sock := filepath.Join(sockDir, "csi.sock")
	lis, err := server.Listen("unix://" + sock)
	must(t, err)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := server.Serve(ctx, lis, server.Options{Version: "test"}, e.snaps.GuardNode(node), e.snaps); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	e.node, e.ctrl, e.id = csi.NewNodeClient(conn), csi.NewControllerClient(conn), csi.NewIdentityClient(conn)
	var once bool
	e.stop = func() {
		if once {
			return
		}
		once = true
		check(t, conn.Close())
		cancel()
		<-stopped
		check(t, os.RemoveAll(sockDir))
	}
	t.Cleanup(e.stop)
}

func (e *env) restart() {
	e.stop()
	e.start()
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

// stage stages persistent volume id writable (or read-only) and returns
// its staging path, where the test writes as a pod would.
func (e *env) stage(id string, readOnly bool) string {
	e.t.Helper()
	mode := csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	if readOnly {
		mode = csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY
	}
	staging := filepath.Join(e.dir, id, "globalmount")
	must(e.t, os.MkdirAll(staging, 0o750))
	_, err := e.node.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
		VolumeId: id, StagingTargetPath: staging, VolumeCapability: mountCap(mode),
		VolumeContext: map[string]string{names.ContextLayerSet: testLayerSet},
	}, grpc.WaitForReady(true))
	must(e.t, err)
	return staging
}

func (e *env) unstage(id, staging string) {
	e.t.Helper()
	_, err := e.node.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
	must(e.t, err)
}

// create asks for snapshot name of volume source with params.
func (e *env) create(name, source string, params, secrets map[string]string) (*csi.Snapshot, error) {
	resp, err := e.ctrl.CreateSnapshot(context.Background(), &csi.CreateSnapshotRequest{
		Name: name, SourceVolumeId: source, Parameters: params, Secrets: secrets,
	}, grpc.WaitForReady(true))
	return resp.GetSnapshot(), err
}

func (e *env) mustCreate(name, source string, params, secrets map[string]string) *csi.Snapshot {
	e.t.Helper()
	snap, err := e.create(name, source, params, secrets)
	if err != nil {
		e.t.Fatalf("CreateSnapshot %s of %s: %v", name, source, err)
	}
	return snap
}

func (e *env) list(req *csi.ListSnapshotsRequest) *csi.ListSnapshotsResponse {
	e.t.Helper()
	resp, err := e.ctrl.ListSnapshots(context.Background(), req)
	must(e.t, err)
	return resp
}

func (e *env) ids(req *csi.ListSnapshotsRequest) []string {
	e.t.Helper()
	var ids []string
	for _, en := range e.list(req).GetEntries() {
		ids = append(ids, en.GetSnapshot().GetSnapshotId())
	}
	return ids
}

// layerDir is where the store keeps layer diffID's files.
func (e *env) layerDir(diffID string) string {
	h, err := v1.NewHash(diffID)
	must(e.t, err)
	return filepath.Join(e.store.Dir(), h.Hex, "diff")
}

// record reads snapshot name's record.
func (e *env) record(name string) *snapshotRecord {
	e.t.Helper()
	r, err := e.snaps.records.Load(name)
	must(e.t, err)
	if r == nil {
		e.t.Fatalf("no record of snapshot %s", name)
	}
	return r
}

func wantCode(t *testing.T, err error, code codes.Code, what string) {
	t.Helper()
	if status.Code(err) != code {
		t.Errorf("%s: %v, want %v", what, err, code)
	}
}

// unmountUnder detaches every mount below dirs, deepest first.
func unmountUnder(t testing.TB, dirs ...string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	defer func() { check(t, f.Close()) }()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		for _, d := range dirs {
			if fields[4] == d || strings.HasPrefix(fields[4], d+"/") {
				mps = append(mps, fields[4])
			}
		}
	}
	for i := len(mps) - 1; i >= 0; i-- {
		if err := unix.Unmount(mps[i], unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", mps[i], err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}
