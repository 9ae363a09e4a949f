package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// fakeCatalog resolves the LayerSets it holds, and fails for the others
// as the catalogs do: not found, or err when set.
type fakeCatalog struct {
	sets map[string]*v1alpha1.LayerSet
	err  error
}

func (f fakeCatalog) Resolve(_ context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error) {
	if f.err != nil {
		return nil, nil, f.err
	}
	ls, ok := f.sets[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %q", compose.ErrLayerSetNotFound, name)
	}
	return ls.DeepCopy(), nil, nil
}

// sizedLayerSet is a LayerSet with the given defaultSize and maxSize ("" for unset).
func sizedLayerSet(name, defaultSize, maxSize string) *v1alpha1.LayerSet {
	ls := &v1alpha1.LayerSet{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if defaultSize != "" {
		ls.Spec.DefaultSize = ptrTo(resource.MustParse(defaultSize))
	}
	if maxSize != "" {
		ls.Spec.MaxSize = ptrTo(resource.MustParse(maxSize))
	}
	return ls
}

func ptrTo[T any](v T) *T { return &v }

func expandReq(id string, required, limit int64) *csi.ControllerExpandVolumeRequest {
	return &csi.ControllerExpandVolumeRequest{
		VolumeId:         id,
		CapacityRange:    &csi.CapacityRange{RequiredBytes: required, LimitBytes: limit},
		VolumeCapability: ctrlMountCap(ctrlRWO),
	}
}

func TestControllerExpandVolume(t *testing.T) {
	const gi = int64(1) << 30
	// Created in every case's own controller.
	volumes := []*csi.CreateVolumeRequest{
		ctrlCreateReq("pvc-rw", ctrlWithCapacity(gi, 0), ctrlWithTopology(ctrlTopology("n1"), nil)),
		ctrlCreateReq("pvc-ro", ctrlWithCaps(ctrlMountCap(ctrlROX)), ctrlWithCapacity(gi, 0)),
		ctrlCreateReq("pvc-unlimited"),
		ctrlCreateReq("pvc-orphan", ctrlWithParam(names.ParamLayerSet, "gone"), ctrlWithCapacity(gi, 0)),
	}
	tools := fakeCatalog{sets: map[string]*v1alpha1.LayerSet{
		"tools": sizedLayerSet("tools", "", "2Gi"),
		// pvc-orphan's LayerSet is deleted after the volume is created.
		"gone": sizedLayerSet("gone", "", "1Gi"),
	}}
	tests := []struct {
		name string
		req  *csi.ControllerExpandVolumeRequest
		// expanded with a catalog of LayerSets; nil: none
		catalog catalog.Catalog
		code    codes.Code
		msgs    []string
		// For OK: the answer, and the size recorded after it.
		capacity     int64
		nodeRequired bool
	}{
		{name: "no volume id", req: expandReq("", 2*gi, 0), code: codes.InvalidArgument, msgs: []string{"volume_id"}},
		{name: "no capacity range", req: &csi.ControllerExpandVolumeRequest{VolumeId: "pvc-rw"},
			code: codes.InvalidArgument, msgs: []string{"capacity_range is missing"}},
		{name: "empty capacity range", req: expandReq("pvc-rw", 0, 0), code: codes.InvalidArgument, msgs: []string{"no size"}},
		{name: "negative", req: expandReq("pvc-rw", -1, 0), code: codes.InvalidArgument, msgs: []string{"negative"}},
		{name: "required above limit", req: expandReq("pvc-rw", 3*gi, 2*gi), code: codes.InvalidArgument, msgs: []string{"exceeds limit_bytes"}},
		{name: "absurd", req: expandReq("pvc-rw", names.MaxSize+1, 0), code: codes.OutOfRange, msgs: []string{"at most 1Pi"}},
		{name: "block capability", req: func() *csi.ControllerExpandVolumeRequest {
			r := expandReq("pvc-rw", 2*gi, 0)
			r.VolumeCapability = ctrlBlockCap(ctrlRWO)
			return r
		}(), code: codes.InvalidArgument, msgs: []string{"volume_capability", "block"}},
		{name: "unknown volume", req: expandReq("pvc-none", 2*gi, 0), code: codes.NotFound, msgs: []string{"pvc-none", "does not exist"}},
		{name: "id that is not ours", req: expandReq("../pvc-rw", 2*gi, 0), code: codes.NotFound, msgs: []string{"not created by this controller"}},

		{name: "writable below the smallest size", req: expandReq("pvc-unlimited", 4096, 0), code: codes.OutOfRange, msgs: []string{"4Ki", "smallest"}},
		{name: "grow", req: expandReq("pvc-rw", 2*gi, 0), capacity: 2 * gi, nodeRequired: true},
		{name: "grow to limit_bytes", req: expandReq("pvc-rw", 0, 3*gi), capacity: 3 * gi, nodeRequired: true},
		{name: "same size again", req: expandReq("pvc-rw", gi, 0), capacity: gi, nodeRequired: true},
		{name: "shrink", req: expandReq("pvc-rw", 512<<20, 0), code: codes.OutOfRange, msgs: []string{"pvc-rw", "cannot shrink from 1Gi to 512Mi"}},
		{name: "read-only: recorded, nothing for the node", req: expandReq("pvc-ro", 2*gi, 0), capacity: 2 * gi},
		{name: "unlimited gets a limit", req: expandReq("pvc-unlimited", gi, 0), capacity: gi, nodeRequired: true},

		{name: "up to maxSize", req: expandReq("pvc-rw", 2*gi, 0), catalog: tools, capacity: 2 * gi, nodeRequired: true},
		{name: "above maxSize", req: expandReq("pvc-rw", 3*gi, 0), catalog: tools,
			code: codes.OutOfRange, msgs: []string{"pvc-rw", "size 3Gi exceeds maxSize 2Gi", `"tools"`}},
		{name: "same size is not checked again", req: expandReq("pvc-rw", gi, 0),
			catalog: fakeCatalog{sets: map[string]*v1alpha1.LayerSet{"tools": sizedLayerSet("tools", "", "512Mi")}}, capacity: gi, nodeRequired: true},
		{name: "LayerSet gone: no maxSize to check", req: expandReq("pvc-orphan", 4*gi, 0),
			catalog: fakeCatalog{sets: map[string]*v1alpha1.LayerSet{"tools": sizedLayerSet("tools", "", "2Gi")}}, capacity: 4 * gi, nodeRequired: true},
		{name: "LayerSet not ready: no maxSize to check", req: expandReq("pvc-rw", 4*gi, 0),
			catalog: fakeCatalog{err: fmt.Errorf("%w: LayerSet \"tools\": registry down", catalog.ErrNotReady)}, capacity: 4 * gi, nodeRequired: true},
		{name: "catalog times out", req: expandReq("pvc-rw", 4*gi, 0),
			catalog: fakeCatalog{err: fmt.Errorf("reading LayerSet \"tools\": %w", context.DeadlineExceeded)},
			code:    codes.DeadlineExceeded, msgs: []string{"maxSize", `"tools"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state := t.TempDir()
			setup := newTestController(t, state, tools)
			for _, r := range volumes {
				if _, err := setup.CreateVolume(t.Context(), r); err != nil {
					t.Fatal(err)
				}
			}
			c := newTestController(t, state, tt.catalog)
			before := c.recorded(t, tt.req.GetVolumeId())
			resp, err := c.ControllerExpandVolume(t.Context(), tt.req)
			ctrlWantStatus(t, err, tt.code, tt.msgs...)
			if tt.code != codes.OK {
				if after := c.recorded(t, tt.req.GetVolumeId()); after != before {
					t.Errorf("a refused expansion changed the recorded size from %d to %d", before, after)
				}
				return
			}
			want := &csi.ControllerExpandVolumeResponse{CapacityBytes: tt.capacity, NodeExpansionRequired: tt.nodeRequired}
			if !proto.Equal(resp, want) {
				t.Errorf("answer %v, want %v", resp, want)
			}
			if got := c.recorded(t, tt.req.GetVolumeId()); got != tt.capacity {
				t.Errorf("recorded size %d, want %d", got, tt.capacity)
			}
			// Asked again, the same answer.
			again, err := c.ControllerExpandVolume(t.Context(), tt.req)
			if err != nil || !proto.Equal(again, want) {
				t.Errorf("asked again: %v, %v; want %v", again, err, want)
			}
		})
	}
}

// recorded is the size in the record of volume id; -1 for no record.
func (c *Server) recorded(t *testing.T, id string) int64 {
	t.Helper()
	if !isControllerVolumeID(id) {
		return -1
	}
	v, err := c.volumes.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		return -1
	}
	return v.SizeBytes
}

// An expanded volume is still the one a retried CreateVolume asked for,
// now at its new size, in its record across a restart.
func TestControllerExpandThenCreateAgain(t *testing.T) {
	state := t.TempDir()
	c := newTestController(t, state, nil)
	create := ctrlCreateReq("pvc-grow", ctrlWithCapacity(64<<20, 0), ctrlWithTopology(ctrlTopology("n1"), nil))
	if _, err := c.CreateVolume(t.Context(), create); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ControllerExpandVolume(t.Context(), expandReq("pvc-grow", 128<<20, 0)); err != nil {
		t.Fatal(err)
	}
	after := newTestController(t, state, nil)
	resp, err := after.CreateVolume(t.Context(), create)
	if err != nil {
		t.Fatal(err)
	}
	want := &csi.Volume{VolumeId: "pvc-grow", CapacityBytes: 128 << 20, AccessibleTopology: ctrlTopology("n1"),
		VolumeContext: map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "128Mi"}}
	if !proto.Equal(resp.GetVolume(), want) {
		t.Errorf("volume after expansion and restart\n %v\nwant\n %v", resp.GetVolume(), want)
	}
	_, err = after.ControllerExpandVolume(t.Context(), expandReq("pvc-grow", 64<<20, 0))
	ctrlWantStatus(t, err, codes.OutOfRange, "cannot shrink from 128Mi to 64Mi")
}

// A volume recorded before volumes had sizes keeps the answer it gave
// (its PV has that context), and grows to a size when asked.
func TestControllerRecordBeforeSizes(t *testing.T) {
	state := t.TempDir()
	c := newTestController(t, state, nil) // makes the record directory
	old := `{"id":"pvc-old","name":"pvc-old","params":{"layerSet":"tools","upperSizeHint":"1Gi"},"requiredBytes":1073741824,"writable":true,"created":"2026-01-01T00:00:00Z"}`
	if err := os.WriteFile(filepath.Join(state, controllerRecordDir, "pvc-old.json"), []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	req := ctrlCreateReq("pvc-old", ctrlWithCapacity(1<<30, 0), ctrlWithParam(paramUpperSizeHint, "1Gi"))
	resp, err := c.CreateVolume(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	want := &csi.Volume{VolumeId: "pvc-old", VolumeContext: map[string]string{names.ContextLayerSet: "tools", contextUpperSizeHint: "1Gi"}}
	if !proto.Equal(resp.GetVolume(), want) {
		t.Errorf("old volume\n %v\nwant\n %v", resp.GetVolume(), want)
	}
	grown, err := c.ControllerExpandVolume(t.Context(), expandReq("pvc-old", 2<<30, 0))
	if err != nil || grown.GetCapacityBytes() != 2<<30 || !grown.GetNodeExpansionRequired() {
		t.Fatalf("expanding an old volume: %v, %v", grown, err)
	}
	resp, err = c.CreateVolume(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetVolume().GetVolumeContext()[names.ContextSize]; got != "2Gi" || resp.GetVolume().GetCapacityBytes() != 2<<30 {
		t.Errorf("old volume after expansion: %v", resp.GetVolume())
	}
}
