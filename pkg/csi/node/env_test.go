package node

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/server"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/quota"
	"github.com/layerset/layerset-csi/pkg/source"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the node service mounts overlayfs and bind mounts")
	}
}

const (
	testNode     = "node-1"
	testLayerSet = "tools"
	// podTemplate is the init file every test volume gets.
	podTemplate = "{{.PodNamespace}}/{{.PodName}} {{.PodUID}} {{.ServiceAccount}} on {{.NodeName}} as {{.VolumeID}}"
)

// registry is a test registry holding the image the test LayerSet uses.
type registry struct {
	*testimage.Registry
	image      string  // pinned reference
	layer      v1.Hash // digest of its one layer blob
	blobGets   atomic.Int64
	stall      chan struct{} // closed to let blob downloads through
	stalled    chan struct{} // gets one value per blob download that waits
	stallBlobs bool
	releaseOne sync.Once
}

// newRegistry serves an image of one layer. With stall, a fault that a
// real registry cannot be made to produce on demand: every download of
// the layer blob waits until release is called, as a very slow pull would.
func newRegistry(t *testing.T, stall bool) *registry {
	t.Helper()
	r := &registry{stall: make(chan struct{}), stalled: make(chan struct{}, 16), stallBlobs: stall}
	l, err := testimage.Layer([]testimage.Entry{
		testimage.Dir("etc"),
		testimage.File("etc/os-release", "layerset test\n"),
		testimage.File("bin/tool", "#!/bin/sh\necho tool\n"),
	}, testimage.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	if r.layer, err = l.Digest(); err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(l)
	if err != nil {
		t.Fatal(err)
	}
	blobPath := "/blobs/" + r.layer.String()
	r.Registry = testimage.NewRegistry(t, testimage.WithMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, blobPath) {
				r.blobGets.Add(1)
				if r.stallBlobs {
					r.stalled <- struct{}{}
					select {
					case <-r.stall:
					case <-req.Context().Done():
						return
					}
				}
			}
			next.ServeHTTP(w, req)
		})
	}))
	r.image = r.Push(t, "tools:v1", img)
	t.Cleanup(r.release) // never leave a handler waiting
	return r
}

func (r *registry) release() { r.releaseOne.Do(func() { close(r.stall) }) }

// writeLayerSets writes the test LayerSet, and more documents if given,
// into a new folder.
func writeLayerSets(t *testing.T, image string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	doc := fmt.Sprintf(`apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: %s}
spec:
  layers: [{image: %q}]
  init:
    files:
    - {path: etc/pod, template: %q}
`, testLayerSet, image, podTemplate)
	if err := os.WriteFile(filepath.Join(dir, testLayerSet+".yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, d := range extra {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("extra-%d.yaml", i)), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// env is a node service serving on a real unix socket, backed by a real
// store and a LayerSet folder whose image is in a test registry.
type env struct {
	reg     *registry
	root    string // store root and state
	dir     string // where targets and staging paths go
	store   *layers.Store
	node    *Server
	client  csi.NodeClient
	id      csi.IdentityClient
	sock    string
	stopped chan struct{}
	// events is what the node told pods and PersistentVolumes.
	events *eventLog
}

func newEnv(t *testing.T, reg *registry) *env {
	t.Helper()
	return newEnvQuota(t, reg, quota.ModeOff)
}

// newEnvQuota is newEnv with the node's --quota set to mode.
func newEnvQuota(t *testing.T, reg *registry, mode quota.Mode) *env {
	t.Helper()
	needRoot(t)
	if reg == nil {
		reg = newRegistry(t, false)
	}
	e := &env{reg: reg, root: t.TempDir(), dir: t.TempDir(), stopped: make(chan struct{})}
	// Unmount whatever a failed test left before the temporary
	// directories are removed (cleanups run last registered first).
	t.Cleanup(func() { unmountUnder(t, e.dir, e.root) })
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	e.store, err = layers.Open(ctx, layers.Options{Root: e.root, NoSync: true, Quota: quota.Options{Mode: mode}})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.NewDir(ctx, writeLayerSets(t, reg.image), source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, cat.Close()) })
	e.events = &eventLog{}
	e.node, err = New(ctx, Config{NodeID: testNode, StateDir: filepath.Join(e.root, "csi"), Store: e.store, Catalog: cat, Events: e.events})
	if err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "lcsi") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, os.RemoveAll(sockDir)) })
	e.sock = filepath.Join(sockDir, "csi.sock")
	lis, err := server.Listen("unix://" + e.sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(e.stopped)
		if err := server.Serve(ctx, lis, server.Options{Version: "test"}, e.node); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-e.stopped })
	conn := dial(t, e.sock)
	e.client, e.id = csi.NewNodeClient(conn), csi.NewIdentityClient(conn)
	return e
}

func dial(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, conn.Close()) })
	return conn
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

// ephemeralRequest is what kubelet sends for an inline volume of pod
// shop/web-0.
func (e *env) ephemeralRequest(id, target string) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId:         id,
		TargetPath:       target,
		VolumeCapability: mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER),
		VolumeContext: map[string]string{
			names.ContextLayerSet:       testLayerSet,
			names.ContextPodName:        "web-0",
			names.ContextPodNamespace:   "shop",
			names.ContextPodUID:         "uid-1",
			names.ContextServiceAccount: "builder",
			names.ContextEphemeral:      "true",
		},
	}
}

func (e *env) stageRequest(id, staging string) *csi.NodeStageVolumeRequest {
	return &csi.NodeStageVolumeRequest{
		VolumeId:          id,
		StagingTargetPath: staging,
		VolumeCapability:  mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER),
		VolumeContext:     map[string]string{names.ContextLayerSet: testLayerSet},
	}
}

func (e *env) publishRequest(id, staging, target string, readOnly bool) *csi.NodePublishVolumeRequest {
	return &csi.NodePublishVolumeRequest{
		VolumeId:          id,
		StagingTargetPath: staging,
		TargetPath:        target,
		Readonly:          readOnly,
		VolumeCapability:  mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER),
		VolumeContext:     map[string]string{names.ContextLayerSet: testLayerSet, names.ContextEphemeral: "false"},
	}
}

// mountsUnder lists the mount points at or below any of dirs.
func mountsUnder(t testing.TB, dirs ...string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { check(t, f.Close()) }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		for _, d := range dirs {
			if mp == d || strings.HasPrefix(mp, d+"/") {
				out = append(out, mp)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// unescapeMountinfo undoes the octal escapes (\040 for a space, ...) of
// /proc/self/mountinfo.
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder unmounts everything below dirs, deepest first.
func unmountUnder(t testing.TB, dirs ...string) {
	mps := mountsUnder(t, dirs...)
	for i := len(mps) - 1; i >= 0; i-- {
		if err := unmount(mps[i]); err != nil {
			t.Logf("cleanup: unmount %s: %v", mps[i], err)
		}
	}
}

func unmount(path string) error { return unix.Unmount(path, unix.MNT_DETACH) }

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// grpcWaitForReady makes a call wait for the connection instead of
// failing while the plugin is still starting.
func grpcWaitForReady() grpc.CallOption { return grpc.WaitForReady(true) }

// syncBuffer collects a subprocess's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// check reports a cleanup's error.
func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Error(err)
	}
}
