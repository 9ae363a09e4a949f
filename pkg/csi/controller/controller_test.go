package controller

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/csi/server"
	"github.com/layerset/layerset-csi/pkg/health"
	"github.com/layerset/layerset-csi/pkg/source"
)

func newTestController(t *testing.T, stateDir string, cat catalog.Catalog) *Server {
	t.Helper()
	c, err := New(t.Context(), Config{StateDir: stateDir, Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctrlMountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func ctrlBlockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func ctrlTopology(nodes ...string) []*csi.Topology {
	ts := make([]*csi.Topology, len(nodes))
	for i, n := range nodes {
		ts[i] = &csi.Topology{Segments: map[string]string{names.TopologyKey: n}}
	}
	return ts
}

const (
	ctrlRWO  = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER
	ctrlRWOP = csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER
	ctrlROX  = csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
	ctrlRWX  = csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER
)

// ctrlCreateReq is a valid request for a writable volume of LayerSet tools
// with no topology; cases change what they test.
func ctrlCreateReq(name string, change ...func(*csi.CreateVolumeRequest)) *csi.CreateVolumeRequest {
	r := &csi.CreateVolumeRequest{
		Name:               name,
		Parameters:         map[string]string{names.ParamLayerSet: "tools"},
		VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)},
	}
	for _, c := range change {
		c(r)
	}
	return r
}

func ctrlWithCaps(caps ...*csi.VolumeCapability) func(*csi.CreateVolumeRequest) {
	return func(r *csi.CreateVolumeRequest) { r.VolumeCapabilities = caps }
}

func ctrlWithParam(k, v string) func(*csi.CreateVolumeRequest) {
	return func(r *csi.CreateVolumeRequest) { r.Parameters[k] = v }
}

func ctrlWithTopology(preferred, requisite []*csi.Topology) func(*csi.CreateVolumeRequest) {
	return func(r *csi.CreateVolumeRequest) {
		r.AccessibilityRequirements = &csi.TopologyRequirement{Preferred: preferred, Requisite: requisite}
	}
}

func ctrlWithCapacity(required, limit int64) func(*csi.CreateVolumeRequest) {
	return func(r *csi.CreateVolumeRequest) {
		r.CapacityRange = &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit}
	}
}

// ctrlWantStatus fails unless err has code and its message contains every
// one of msgs.
func ctrlWantStatus(t *testing.T, err error, code codes.Code, msgs ...string) {
	t.Helper()
	st := status.Convert(err)
	if err == nil && code == codes.OK {
		return
	}
	if st.Code() != code {
		t.Fatalf("got %v: %q, want code %v", st.Code(), st.Message(), code)
	}
	for _, m := range msgs {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("message %q does not mention %q", st.Message(), m)
		}
	}
}

func TestControllerCreateVolume(t *testing.T) {
	longName := strings.Repeat("vol ume/", 16) // 128 bytes, not a file name
	tests := []struct {
		name string
		req  *csi.CreateVolumeRequest
		code codes.Code
		msgs []string
		// For successful calls: the volume's id, capacity, context and
		// the node it is pinned to ("" for none).
		id       string
		capacity int64
		context  map[string]string
		node     string
	}{
		{name: "writable, no topology: not pinned", req: ctrlCreateReq("pvc-1"),
			id: "pvc-1", context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "read-only many", req: ctrlCreateReq("pvc-ro", ctrlWithCaps(ctrlMountCap(ctrlROX))),
			id: "pvc-ro", context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "read-only ignores topology: every node can compose it",
			req: ctrlCreateReq("pvc-ro-topo", ctrlWithCaps(ctrlMountCap(ctrlROX)), ctrlWithTopology(ctrlTopology("n2"), ctrlTopology("n1", "n2"))),
			id:  "pvc-ro-topo", context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "WaitForFirstConsumer: selected node is preferred[0]",
			req: ctrlCreateReq("pvc-wffc", ctrlWithTopology(ctrlTopology("n2", "n1", "n3"), ctrlTopology("n1", "n2", "n3"))),
			id:  "pvc-wffc", context: map[string]string{names.ContextLayerSet: "tools"}, node: "n2"},
		{name: "ReadWriteOncePod pinned too",
			req: ctrlCreateReq("pvc-rwop", ctrlWithCaps(ctrlMountCap(ctrlRWOP)), ctrlWithTopology(ctrlTopology("n3"), nil)),
			id:  "pvc-rwop", context: map[string]string{names.ContextLayerSet: "tools"}, node: "n3"},
		{name: "requisite only", req: ctrlCreateReq("pvc-req", ctrlWithTopology(nil, ctrlTopology("n1", "n2"))),
			id: "pvc-req", context: map[string]string{names.ContextLayerSet: "tools"}, node: "n1"},
		{name: "preferred outside requisite is skipped",
			req: ctrlCreateReq("pvc-skip", ctrlWithTopology(ctrlTopology("n9", "n2"), ctrlTopology("n1", "n2"))),
			id:  "pvc-skip", context: map[string]string{names.ContextLayerSet: "tools"}, node: "n2"},
		{name: "mixed read-only and writable modes pin",
			req: ctrlCreateReq("pvc-mixed", ctrlWithCaps(ctrlMountCap(ctrlROX), ctrlMountCap(ctrlRWO)), ctrlWithTopology(ctrlTopology("n1"), nil)),
			id:  "pvc-mixed", context: map[string]string{names.ContextLayerSet: "tools"}, node: "n1"},
		{name: "provisioner metadata accepted and dropped",
			req: ctrlCreateReq("pvc-meta", ctrlWithParam("csi.storage.k8s.io/pvc/name", "data"),
				ctrlWithParam("csi.storage.k8s.io/pvc/namespace", "default"), ctrlWithParam("csi.storage.k8s.io/pv/name", "pvc-meta")),
			id: "pvc-meta", context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "no capacity range: unlimited", req: ctrlCreateReq("pvc-unlimited", ctrlWithCapacity(0, 0)),
			id: "pvc-unlimited", context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "deprecated upperSizeHint is the size without a capacity range", req: ctrlCreateReq("pvc-hint", ctrlWithParam(paramUpperSizeHint, "1024Mi")),
			id: "pvc-hint", capacity: 1 << 30, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1Gi"}},
		{name: "required_bytes is the size", req: ctrlCreateReq("pvc-cap", ctrlWithCapacity(1<<30, 2<<30)),
			id: "pvc-cap", capacity: 1 << 30, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1Gi"}},
		{name: "limit_bytes is the size without required_bytes", req: ctrlCreateReq("pvc-limit", ctrlWithCapacity(0, 64<<20)),
			id: "pvc-limit", capacity: 64 << 20, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "64Mi"}},
		{name: "capacity range wins over upperSizeHint", req: ctrlCreateReq("pvc-both", ctrlWithCapacity(64<<20, 0), ctrlWithParam(paramUpperSizeHint, "1Gi")),
			id: "pvc-both", capacity: 64 << 20, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "64Mi"}},
		{name: "size not a multiple of 1024 in bytes", req: ctrlCreateReq("pvc-dec", ctrlWithCapacity(1e9, 0)),
			id: "pvc-dec", capacity: 1e9, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1000000000"}},
		{name: "odd size in bytes", req: ctrlCreateReq("pvc-odd", ctrlWithCapacity(names.MinSize+1, 0)),
			id: "pvc-odd", capacity: names.MinSize + 1, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1048577"}},
		{name: "smallest size", req: ctrlCreateReq("pvc-small", ctrlWithCapacity(names.MinSize, 0)),
			id: "pvc-small", capacity: names.MinSize, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1Mi"}},
		{name: "read-only: any size, it limits nothing", req: ctrlCreateReq("pvc-ro-tiny", ctrlWithCaps(ctrlMountCap(ctrlROX)), ctrlWithCapacity(1, 0)),
			id: "pvc-ro-tiny", capacity: 1, context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "largest size", req: ctrlCreateReq("pvc-huge", ctrlWithCapacity(names.MaxSize, 0)),
			id: "pvc-huge", capacity: names.MaxSize, context: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1Pi"}},
		{name: "read-only: capacity reported, no size to enforce", req: ctrlCreateReq("pvc-ro-cap", ctrlWithCaps(ctrlMountCap(ctrlROX)), ctrlWithCapacity(1<<30, 0)),
			id: "pvc-ro-cap", capacity: 1 << 30, context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "unsafe long name is hashed", req: ctrlCreateReq(longName),
			id: volumeIDForName(longName), context: map[string]string{names.ContextLayerSet: "tools"}},
		{name: "name looking like a hash is hashed", req: ctrlCreateReq("h-0123"),
			id: volumeIDForName("h-0123"), context: map[string]string{names.ContextLayerSet: "tools"}},

		{name: "no name", req: ctrlCreateReq(""), code: codes.InvalidArgument, msgs: []string{"name"}},
		{name: "no capabilities", req: ctrlCreateReq("x", ctrlWithCaps()), code: codes.InvalidArgument, msgs: []string{"volume_capabilities"}},
		{name: "nil capability", req: ctrlCreateReq("x", ctrlWithCaps(nil)), code: codes.InvalidArgument, msgs: []string{"volume_capabilities[0]"}},
		{name: "no access mode", req: ctrlCreateReq("x", ctrlWithCaps(&csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}}})),
			code: codes.InvalidArgument, msgs: []string{"access mode"}},
		{name: "block", req: ctrlCreateReq("x", ctrlWithCaps(ctrlBlockCap(ctrlROX))), code: codes.InvalidArgument, msgs: []string{"block"}},
		{name: "multi-node multi-writer", req: ctrlCreateReq("x", ctrlWithCaps(ctrlMountCap(ctrlRWX))),
			code: codes.InvalidArgument, msgs: []string{"MULTI_NODE_MULTI_WRITER", "one node"}},
		{name: "multi-node single-writer among others",
			req:  ctrlCreateReq("x", ctrlWithCaps(ctrlMountCap(ctrlROX), ctrlMountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER))),
			code: codes.InvalidArgument, msgs: []string{"volume_capabilities[1]", "MULTI_NODE_SINGLE_WRITER"}},
		{name: "no layerSet", req: ctrlCreateReq("x", func(r *csi.CreateVolumeRequest) { delete(r.Parameters, names.ParamLayerSet) }),
			code: codes.InvalidArgument, msgs: []string{names.ParamLayerSet, "missing"}},
		{name: "bad layerSet name", req: ctrlCreateReq("x", ctrlWithParam(names.ParamLayerSet, "Tools_v1")),
			code: codes.InvalidArgument, msgs: []string{`"Tools_v1"`}},
		{name: "unknown parameters named", req: ctrlCreateReq("x", ctrlWithParam("fsType", "ext4"), ctrlWithParam("csi.storage.k8s.io/fstype", "ext4")),
			code: codes.InvalidArgument, msgs: []string{`"csi.storage.k8s.io/fstype" "fsType"`}},
		{name: "upperSizeHint not a quantity", req: ctrlCreateReq("x", ctrlWithParam(paramUpperSizeHint, "ten gigs")),
			code: codes.InvalidArgument, msgs: []string{paramUpperSizeHint, `"ten gigs"`}},
		{name: "upperSizeHint zero", req: ctrlCreateReq("x", ctrlWithParam(paramUpperSizeHint, "0")),
			code: codes.InvalidArgument, msgs: []string{"positive"}},
		{name: "upperSizeHint negative", req: ctrlCreateReq("x", ctrlWithParam(paramUpperSizeHint, "-1Gi")),
			code: codes.InvalidArgument, msgs: []string{"positive"}},
		{name: "required above limit", req: ctrlCreateReq("x", ctrlWithCapacity(2<<30, 1<<30)),
			code: codes.InvalidArgument, msgs: []string{"exceeds limit_bytes"}},
		{name: "negative capacity", req: ctrlCreateReq("x", ctrlWithCapacity(-1, 0)),
			code: codes.InvalidArgument, msgs: []string{"negative"}},
		{name: "negative limit", req: ctrlCreateReq("x", ctrlWithCapacity(0, -1)),
			code: codes.InvalidArgument, msgs: []string{"negative"}},
		{name: "writable below the smallest size", req: ctrlCreateReq("x", ctrlWithCapacity(names.MinSize-1, 0)),
			code: codes.OutOfRange, msgs: []string{"1048575", "smallest", "1Mi"}},
		{name: "upperSizeHint below the smallest size", req: ctrlCreateReq("x", ctrlWithParam(paramUpperSizeHint, "512Ki")),
			code: codes.OutOfRange, msgs: []string{"512Ki", "smallest"}},
		{name: "absurd size", req: ctrlCreateReq("x", ctrlWithCapacity(names.MaxSize+1, 0)),
			code: codes.OutOfRange, msgs: []string{"1125899906842625 bytes", "at most 1Pi"}},
		{name: "absurd limit", req: ctrlCreateReq("x", ctrlWithCapacity(0, 1<<62)),
			code: codes.OutOfRange, msgs: []string{"at most 1Pi"}},
		{name: "absurd upperSizeHint", req: ctrlCreateReq("x", ctrlWithParam(paramUpperSizeHint, "9Ei")),
			code: codes.InvalidArgument, msgs: []string{paramUpperSizeHint, `"9Ei"`, "at most 1Pi"}},
		{name: "writable, topology without a node key",
			req:  ctrlCreateReq("x", ctrlWithTopology([]*csi.Topology{{Segments: map[string]string{"topology.kubernetes.io/zone": "a"}}}, nil)),
			code: codes.InvalidArgument, msgs: []string{names.TopologyKey, "zone"}},
		{name: "clone", req: ctrlCreateReq("x", func(r *csi.CreateVolumeRequest) {
			r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
				Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: "pvc-1"}}}
		}), code: codes.InvalidArgument, msgs: []string{"volume_content_source"}},
		{name: "mutable parameters", req: ctrlCreateReq("x", func(r *csi.CreateVolumeRequest) {
			r.MutableParameters = map[string]string{"iops": "1"}
		}), code: codes.InvalidArgument, msgs: []string{"mutable_parameters"}},
	}
	c := newTestController(t, t.TempDir(), nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.CreateVolume(t.Context(), tt.req)
			ctrlWantStatus(t, err, tt.code, tt.msgs...)
			if tt.code != codes.OK {
				if ok, _ := c.VolumeExists(t.Context(), volumeIDForName(tt.req.GetName())); ok && tt.req.GetName() != "" {
					t.Errorf("a refused request left volume %s recorded", volumeIDForName(tt.req.GetName()))
				}
				return
			}
			want := &csi.Volume{VolumeId: tt.id, CapacityBytes: tt.capacity, VolumeContext: tt.context, AccessibleTopology: pinnedTopology(tt.node)}
			if !proto.Equal(resp.GetVolume(), want) {
				t.Errorf("volume\n %v\nwant\n %v", resp.GetVolume(), want)
			}
			if ok, err := c.VolumeExists(t.Context(), tt.id); !ok || err != nil {
				t.Errorf("VolumeExists(%s) = %t, %v after creation", tt.id, ok, err)
			}
			writable := slices.ContainsFunc(tt.req.GetVolumeCapabilities(), func(c *csi.VolumeCapability) bool { return !rpc.ReadOnlyMode(c) })
			v, err := c.Volume(t.Context(), tt.id)
			if err != nil || v == nil || v.LayerSet != tt.context[names.ContextLayerSet] || v.Writable != writable {
				t.Errorf("Volume(%s) = %+v, %v after creation", tt.id, v, err)
			}
		})
	}
}

// A second CreateVolume with the same name returns the first volume when
// it asks for something the volume gives, AlreadyExists otherwise.
func TestControllerCreateVolumeAgain(t *testing.T) {
	pinnedN1 := []func(*csi.CreateVolumeRequest){ctrlWithTopology(ctrlTopology("n1"), ctrlTopology("n1", "n2"))}
	tests := []struct {
		name          string
		first, second []func(*csi.CreateVolumeRequest)
		code          codes.Code
		msgs          []string
	}{
		{name: "same request", code: codes.OK},
		{name: "same capacity", first: []func(*csi.CreateVolumeRequest){ctrlWithCapacity(1<<30, 1<<30)},
			second: []func(*csi.CreateVolumeRequest){ctrlWithCapacity(1<<30, 1<<30)}, code: codes.OK},
		{name: "different claim metadata", second: []func(*csi.CreateVolumeRequest){ctrlWithParam("csi.storage.k8s.io/pvc/name", "other")}, code: codes.OK},
		{name: "different capacity", first: []func(*csi.CreateVolumeRequest){ctrlWithCapacity(1<<30, 1<<30)},
			second: []func(*csi.CreateVolumeRequest){ctrlWithCapacity(2<<30, 2<<30)}, code: codes.AlreadyExists, msgs: []string{"capacity"}},
		{name: "capacity added", second: []func(*csi.CreateVolumeRequest){ctrlWithCapacity(1<<30, 0)}, code: codes.AlreadyExists, msgs: []string{"capacity"}},
		{name: "different LayerSet", second: []func(*csi.CreateVolumeRequest){ctrlWithParam(names.ParamLayerSet, "other")},
			code: codes.AlreadyExists, msgs: []string{`"tools"`, `"other"`}},
		{name: "different upper size hint", second: []func(*csi.CreateVolumeRequest){ctrlWithParam(paramUpperSizeHint, "1Gi")},
			code: codes.AlreadyExists, msgs: []string{"upper size hint"}},
		{name: "read-only, then writable", first: []func(*csi.CreateVolumeRequest){ctrlWithCaps(ctrlMountCap(ctrlROX))},
			code: codes.AlreadyExists, msgs: []string{"read-only"}},
		{name: "writable, then read-only", second: []func(*csi.CreateVolumeRequest){ctrlWithCaps(ctrlMountCap(ctrlROX))}, code: codes.OK},
		{name: "pinned, requisite still has the node", first: pinnedN1,
			second: []func(*csi.CreateVolumeRequest){ctrlWithTopology(ctrlTopology("n2"), ctrlTopology("n2", "n1"))}, code: codes.OK},
		{name: "pinned, preference alone does not move it", first: pinnedN1,
			second: []func(*csi.CreateVolumeRequest){ctrlWithTopology(ctrlTopology("n2"), nil)}, code: codes.OK},
		{name: "pinned, requisite excludes the node", first: pinnedN1,
			second: []func(*csi.CreateVolumeRequest){ctrlWithTopology(ctrlTopology("n2"), ctrlTopology("n2"))},
			code:   codes.AlreadyExists, msgs: []string{`node "n1"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestController(t, t.TempDir(), nil)
			first, err := c.CreateVolume(t.Context(), ctrlCreateReq("pvc-again", tt.first...))
			if err != nil {
				t.Fatal(err)
			}
			second, err := c.CreateVolume(t.Context(), ctrlCreateReq("pvc-again", tt.second...))
			ctrlWantStatus(t, err, tt.code, tt.msgs...)
			if err == nil && !proto.Equal(first.GetVolume(), second.GetVolume()) {
				t.Errorf("second volume\n %v\ndiffers from the first\n %v", second.GetVolume(), first.GetVolume())
			}
		})
	}
}

func TestControllerCreateVolumeBusy(t *testing.T) {
	c := newTestController(t, t.TempDir(), nil)
	release, err := c.inflight.Acquire("pvc-busy")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateVolume(t.Context(), ctrlCreateReq("pvc-busy"))
	ctrlWantStatus(t, err, codes.Aborted, "pvc-busy")
	_, err = c.DeleteVolume(t.Context(), &csi.DeleteVolumeRequest{VolumeId: "pvc-busy"})
	ctrlWantStatus(t, err, codes.Aborted, "pvc-busy")
	release()
	if _, err := c.CreateVolume(t.Context(), ctrlCreateReq("pvc-busy")); err != nil {
		t.Errorf("after the other call finished: %v", err)
	}
}

// With a catalog, a volume is created only for a LayerSet that resolves:
// here a folder of LayerSet files whose images are OCI layouts on disk.
func TestControllerCreateVolumeChecksLayerSet(t *testing.T) {
	layout := filepath.Join(t.TempDir(), "layout")
	layer, err := testimage.Layer([]testimage.Entry{testimage.File("bin/tool", "#!/bin/sh\n")}, testimage.Gzip)
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(layer)
	if err != nil {
		t.Fatal(err)
	}
	testimage.WriteLayout(t, layout, "v1", img)

	dir := t.TempDir()
	files := map[string]string{
		"tools":      "layers: [{image: 'oci:" + layout + ":v1'}]",
		"init-only":  "init: {files: [{path: etc/motd, content: hi}]}",
		"no-image":   "layers: [{image: 'oci:" + filepath.Join(dir, "absent") + ":v1'}]",
		"loop-a":     "layers: [{layerSet: loop-b}]",
		"loop-b":     "layers: [{layerSet: loop-a}]",
		"orphan":     "layers: [{layerSet: nowhere}]",
		"both-kinds": "layers: [{image: 'oci:" + layout + ":v1', layerSet: tools}]",
	}
	for name, spec := range files {
		doc := "apiVersion: layerset.io/v1alpha1\nkind: LayerSet\nmetadata: {name: " + name + "}\nspec: {" + spec + "}\n"
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cat, err := catalog.NewDir(t.Context(), dir, source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := cat.Close(); err != nil {
			t.Error(err)
		}
	}()
	c := newTestController(t, t.TempDir(), cat)

	tests := []struct {
		layerSet string
		code     codes.Code
		msgs     []string
	}{
		{"tools", codes.OK, nil},
		{"init-only", codes.OK, nil},
		{"missing", codes.FailedPrecondition, []string{`"missing"`, "not found"}},
		{"no-image", codes.FailedPrecondition, []string{"absent"}},
		{"loop-a", codes.FailedPrecondition, []string{"loop-a -> loop-b -> loop-a"}},
		{"orphan", codes.FailedPrecondition, []string{`"nowhere"`}},
		{"both-kinds", codes.FailedPrecondition, []string{"exactly one"}},
	}
	for _, tt := range tests {
		t.Run(tt.layerSet, func(t *testing.T) {
			name := "pvc-" + tt.layerSet
			_, err := c.CreateVolume(t.Context(), ctrlCreateReq(name, ctrlWithParam(names.ParamLayerSet, tt.layerSet)))
			ctrlWantStatus(t, err, tt.code, tt.msgs...)
			if exists, _ := c.VolumeExists(t.Context(), name); exists != (tt.code == codes.OK) {
				t.Errorf("VolumeExists = %t after a call that returned %v", exists, tt.code)
			}
		})
	}
}

func TestControllerDeleteVolume(t *testing.T) {
	state := t.TempDir()
	c := newTestController(t, state, nil)
	if _, err := c.CreateVolume(t.Context(), ctrlCreateReq("pvc-del")); err != nil {
		t.Fatal(err)
	}
	// A file outside the records that a crafted id could point at.
	outside := filepath.Join(state, "keep.json")
	if err := os.WriteFile(outside, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, id string
		code     codes.Code
	}{
		{"no id", "", codes.InvalidArgument},
		{"existing", "pvc-del", codes.OK},
		{"again", "pvc-del", codes.OK},
		{"never created", "pvc-unknown", codes.OK},
		{"path in the id", "../keep", codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.DeleteVolume(t.Context(), &csi.DeleteVolumeRequest{VolumeId: tt.id})
			ctrlWantStatus(t, err, tt.code)
		})
	}
	if ok, err := c.VolumeExists(t.Context(), "pvc-del"); ok || err != nil {
		t.Errorf("VolumeExists after delete = %t, %v", ok, err)
	}
	if _, err := os.Stat(filepath.Join(state, controllerRecordDir, "pvc-del.json")); !os.IsNotExist(err) {
		t.Errorf("record still on disk: %v", err)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a file outside the records was touched: %v", err)
	}
	_, err := c.ValidateVolumeCapabilities(t.Context(), &csi.ValidateVolumeCapabilitiesRequest{
		VolumeId: "pvc-del", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)}})
	ctrlWantStatus(t, err, codes.NotFound, "pvc-del")
}

func TestControllerValidateVolumeCapabilities(t *testing.T) {
	c := newTestController(t, t.TempDir(), nil)
	for _, r := range []*csi.CreateVolumeRequest{
		ctrlCreateReq("pvc-rw", ctrlWithParam(paramUpperSizeHint, "2Gi"), ctrlWithTopology(ctrlTopology("n1"), nil)),
		ctrlCreateReq("pvc-ro", ctrlWithCaps(ctrlMountCap(ctrlROX))),
	} {
		if _, err := c.CreateVolume(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	rwContext := map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "2Gi"}
	tests := []struct {
		name string
		req  *csi.ValidateVolumeCapabilitiesRequest
		code codes.Code
		// For OK: confirmed, or else the message must contain msgs.
		confirmed bool
		msgs      []string
	}{
		{name: "no id", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)}},
			code: codes.InvalidArgument, msgs: []string{"volume_id"}},
		{name: "no capabilities", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw"},
			code: codes.InvalidArgument, msgs: []string{"volume_capabilities"}},
		{name: "unknown volume", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-none", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)}},
			code: codes.NotFound, msgs: []string{"pvc-none"}},
		{name: "id that is not ours", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "../pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)}},
			code: codes.NotFound},
		{name: "writable on writable", confirmed: true,
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO), ctrlMountCap(ctrlRWOP)}}},
		{name: "read-only on writable", confirmed: true,
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlROX)}}},
		{name: "read-only on read-only", confirmed: true,
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-ro", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlROX)}}},
		{name: "matching context and parameters", confirmed: true,
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)},
				VolumeContext: rwContext,
				Parameters:    map[string]string{names.ParamLayerSet: "tools", paramUpperSizeHint: "2048Mi", "csi.storage.k8s.io/pv/name": "pvc-rw"}}},
		{name: "context of the size before an expansion", confirmed: true,
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)},
				VolumeContext: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "1Gi"}}},
		{name: "writable on read-only", msgs: []string{"read-only", "SINGLE_NODE_WRITER"},
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-ro", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)}}},
		{name: "block", msgs: []string{"block"},
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlBlockCap(ctrlRWO)}}},
		{name: "multi-node writer", msgs: []string{"MULTI_NODE_MULTI_WRITER"},
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWX)}}},
		{name: "other volume context", msgs: []string{"volume context"},
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-rw", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlRWO)},
				VolumeContext: map[string]string{names.ContextLayerSet: "other", names.ContextSize: "2Gi"}}},
		{name: "other parameters", msgs: []string{"parameters"},
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-ro", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlROX)},
				Parameters: map[string]string{names.ParamLayerSet: "other"}}},
		{name: "invalid parameters", msgs: []string{"unknown parameters"},
			req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "pvc-ro", VolumeCapabilities: []*csi.VolumeCapability{ctrlMountCap(ctrlROX)},
				Parameters: map[string]string{names.ParamLayerSet: "tools", "fsType": "ext4"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.ValidateVolumeCapabilities(t.Context(), tt.req)
			if tt.code != codes.OK {
				ctrlWantStatus(t, err, tt.code, tt.msgs...)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.confirmed {
				if resp.GetConfirmed() != nil {
					t.Fatalf("confirmed %v, want a refusal mentioning %q", resp.GetConfirmed(), tt.msgs)
				}
				for _, m := range tt.msgs {
					if !strings.Contains(resp.GetMessage(), m) {
						t.Errorf("message %q does not mention %q", resp.GetMessage(), m)
					}
				}
				return
			}
			want := &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
				VolumeContext: tt.req.VolumeContext, VolumeCapabilities: tt.req.VolumeCapabilities, Parameters: tt.req.Parameters}
			if !proto.Equal(resp.GetConfirmed(), want) {
				t.Errorf("confirmed %v (message %q), want %v", resp.GetConfirmed(), resp.GetMessage(), want)
			}
		})
	}
}

// The records are the controller's memory: a new server over the same
// StateDir knows every volume the last one created and forgets the ones
// it deleted.
func TestControllerRestart(t *testing.T) {
	state := t.TempDir()
	before := newTestController(t, state, nil)
	reqs := map[string]*csi.CreateVolumeRequest{
		"pvc-a": ctrlCreateReq("pvc-a", ctrlWithTopology(ctrlTopology("n1"), ctrlTopology("n1", "n2")), ctrlWithParam(paramUpperSizeHint, "5Gi")),
		"pvc-b": ctrlCreateReq("pvc-b", ctrlWithCaps(ctrlMountCap(ctrlROX))),
		"pvc-c": ctrlCreateReq("pvc-c"),
	}
	created := map[string]*csi.Volume{}
	for name, r := range reqs {
		resp, err := before.CreateVolume(t.Context(), r)
		if err != nil {
			t.Fatal(err)
		}
		created[name] = resp.GetVolume()
	}
	if _, err := before.DeleteVolume(t.Context(), &csi.DeleteVolumeRequest{VolumeId: "pvc-c"}); err != nil {
		t.Fatal(err)
	}
	// Leftovers of saves a crash cut short: an old one is removed at
	// start-up, a fresh one may be another process's save in progress.
	recordDir := filepath.Join(state, controllerRecordDir)
	oldTmp, freshTmp := filepath.Join(recordDir, ".tmp-old"), filepath.Join(recordDir, ".tmp-fresh")
	for _, p := range []string{oldTmp, freshTmp} {
		if err := os.WriteFile(p, []byte("{"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-time.Hour)
	if err := os.Chtimes(oldTmp, long, long); err != nil {
		t.Fatal(err)
	}

	after := newTestController(t, state, nil)
	if _, err := os.Stat(oldTmp); !os.IsNotExist(err) {
		t.Errorf("old temporary file kept: %v", err)
	}
	if _, err := os.Stat(freshTmp); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
	for _, name := range []string{"pvc-a", "pvc-b"} {
		resp, err := after.CreateVolume(t.Context(), reqs[name])
		if err != nil || !proto.Equal(resp.GetVolume(), created[name]) {
			t.Errorf("CreateVolume(%s) after restart = %v, %v; want %v", name, resp.GetVolume(), err, created[name])
		}
		if ok, err := after.VolumeExists(t.Context(), name); !ok || err != nil {
			t.Errorf("VolumeExists(%s) after restart = %t, %v", name, ok, err)
		}
	}
	if ok, err := after.VolumeExists(t.Context(), "pvc-c"); ok || err != nil {
		t.Errorf("deleted volume pvc-c: VolumeExists after restart = %t, %v", ok, err)
	}
	_, err := after.CreateVolume(t.Context(), ctrlCreateReq("pvc-a", ctrlWithTopology(ctrlTopology("n2"), ctrlTopology("n2")), ctrlWithParam(paramUpperSizeHint, "5Gi")))
	ctrlWantStatus(t, err, codes.AlreadyExists, `node "n1"`)
}

// A record that cannot be read must not read as "no such volume": a
// node's sweep would delete the volume's upper.
func TestControllerDamagedRecord(t *testing.T) {
	state := t.TempDir()
	c := newTestController(t, state, nil)
	if _, err := c.CreateVolume(t.Context(), ctrlCreateReq("pvc-bad")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, controllerRecordDir, "pvc-bad.json"), []byte("{\"id\": "), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.VolumeExists(t.Context(), "pvc-bad"); err == nil {
		t.Errorf("VolumeExists on a damaged record = %t, nil; want an error", ok)
	}
	_, err := c.CreateVolume(t.Context(), ctrlCreateReq("pvc-bad"))
	ctrlWantStatus(t, err, codes.Internal, "pvc-bad")
	_, err = c.DeleteVolume(t.Context(), &csi.DeleteVolumeRequest{VolumeId: "pvc-bad"})
	ctrlWantStatus(t, err, codes.Internal, "pvc-bad")
}

func TestControllerGetCapabilities(t *testing.T) {
	c := newTestController(t, t.TempDir(), nil)
	resp, err := c.ControllerGetCapabilities(t.Context(), &csi.ControllerGetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []csi.ControllerServiceCapability_RPC_Type
	for _, c := range resp.GetCapabilities() {
		got = append(got, c.GetRpc().GetType())
	}
	want := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
	}
	if !slices.Equal(got, want) {
		t.Errorf("capabilities %v, want %v", got, want)
	}
}

func TestControllerCheck(t *testing.T) {
	state := t.TempDir()
	c := newTestController(t, state, nil)
	if err := c.Check(t.Context()); err != nil {
		t.Fatalf("Check on a fresh state directory: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(state, controllerRecordDir)); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(t.Context()); err == nil || !strings.Contains(err.Error(), controllerRecordDir) {
		t.Errorf("Check without its record directory: %v, want an error naming it", err)
	}
}

func TestNewControllerServerRejects(t *testing.T) {
	for _, dir := range []string{"", "relative/state"} {
		if _, err := New(context.Background(), Config{StateDir: dir}); err == nil {
			t.Errorf("StateDir %q accepted", dir)
		}
	}
}

// StorageClass parameters come from whoever may create StorageClasses.
func FuzzControllerClassParams(f *testing.F) {
	f.Add("tools", "10Gi", "", "")
	f.Add("", "", "fsType", "ext4")
	f.Add("a.b-c", "1.5e3", "csi.storage.k8s.io/pv/name", "pvc-1")
	f.Add("x", "0.1", names.ParamLayerSet, "y")
	f.Fuzz(func(t *testing.T, layerSet, hint, key, value string) {
		params := map[string]string{names.ParamLayerSet: layerSet}
		if hint != "" {
			params[paramUpperSizeHint] = hint
		}
		if key != "" {
			params[key] = value
		}
		p, err := parseClassParams(params)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error with code %v: %v", status.Code(err), err)
			}
			return
		}
		if p.LayerSet != params[names.ParamLayerSet] || len(validation.IsDNS1123Subdomain(p.LayerSet)) > 0 {
			t.Fatalf("accepted LayerSet name %q from %v", p.LayerSet, params)
		}
		if _, ok := params[paramUpperSizeHint]; ok != (p.UpperSizeHint != "") {
			t.Fatalf("upper size hint %q from %v", p.UpperSizeHint, params)
		}
		// The canonical form is a fixed point, so a record compares equal
		// to a retry that spells the quantity differently.
		again := map[string]string{names.ParamLayerSet: p.LayerSet}
		if p.UpperSizeHint != "" {
			again[paramUpperSizeHint] = p.UpperSizeHint
		}
		if q, err := parseClassParams(again); err != nil || q != p {
			t.Fatalf("canonical %+v parses to %+v, %v", p, q, err)
		}
		if vc := p.volumeContext(); vc[names.ContextLayerSet] != p.LayerSet {
			t.Fatalf("volume context %v lacks the LayerSet", vc)
		}
	})
}

// Volume names come from the CO; ids become file names.
func FuzzControllerVolumeID(f *testing.F) {
	for _, s := range []string{"pvc-0f3c", "", ".", "..", "../x", "h-1", "a/b", strings.Repeat("x", 200), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		id := volumeIDForName(name)
		if !isControllerVolumeID(id) || filepath.Base(id) != id || id == "." || id == ".." {
			t.Fatalf("name %q gives id %q, not a plain file name", name, id)
		}
		if id != volumeIDForName(name) {
			t.Fatalf("name %q gives two ids", name)
		}
		// Kept names and hashes never meet: a kept name does not start
		// with the hash prefix, a hash does.
		if (id == name) == strings.HasPrefix(id, "h-") {
			t.Fatalf("name %q gives id %q", name, id)
		}
	})
}

// Served by Serve, the controller answers over its socket, Identity
// announces it, and Probe asks it whether it can record volumes.
func TestControllerOverSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "ctrl") // short: socket paths are limited to 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	c := newTestController(t, filepath.Join(dir, "state"), nil)
	sock := filepath.Join(dir, "csi.sock")
	lis, err := server.Listen("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, lis, server.Options{}, c) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	}()

	caps, err := csi.NewIdentityClient(conn).GetPluginCapabilities(t.Context(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(caps.GetCapabilities(), func(c *csi.PluginCapability) bool {
		return c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE
	}) {
		t.Errorf("plugin capabilities %v lack CONTROLLER_SERVICE", caps.GetCapabilities())
	}
	resp, err := csi.NewControllerClient(conn).CreateVolume(t.Context(),
		ctrlCreateReq("pvc-wire", ctrlWithTopology(ctrlTopology("n1"), nil)))
	if err != nil || !proto.Equal(resp.GetVolume().GetAccessibleTopology()[0], ctrlTopology("n1")[0]) {
		t.Fatalf("CreateVolume over the socket: %v, %v", resp, err)
	}

	probe := health.GRPCProbe("unix://" + sock)
	if err := probe(t.Context()); err != nil {
		t.Fatalf("probe with a writable state directory: %v", err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "state")); err != nil {
		t.Fatal(err)
	}
	if err := probe(t.Context()); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("probe without the state directory: %v, want the controller's complaint", err)
	}
}
