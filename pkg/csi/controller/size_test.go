package controller

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// With a catalog, CreateVolume sizes a volume that asks for none by its
// LayerSet's defaultSize, and refuses one above its maxSize.
func TestControllerCreateVolumeLayerSetSizes(t *testing.T) {
	cat := fakeCatalog{sets: map[string]*v1alpha1.LayerSet{
		"tools":    sizedLayerSet("tools", "", "2Gi"),
		"defaults": sizedLayerSet("defaults", "256Mi", "1Gi"),
		"free":     sizedLayerSet("free", "", ""),
		"broken":   sizedLayerSet("broken", "4Gi", "1Gi"),
		"tiny":     sizedLayerSet("tiny", "4Ki", ""),
	}}
	tests := []struct {
		name     string
		req      *csi.CreateVolumeRequest
		code     codes.Code
		msgs     []string
		capacity int64
		size     string // the volume context's names.ContextSize
	}{
		{name: "within maxSize", req: ctrlCreateReq("pvc-a", ctrlWithCapacity(1<<30, 0)), capacity: 1 << 30, size: "1Gi"},
		{name: "at maxSize", req: ctrlCreateReq("pvc-b", ctrlWithCapacity(2<<30, 0)), capacity: 2 << 30, size: "2Gi"},
		{name: "above maxSize", req: ctrlCreateReq("pvc-c", ctrlWithCapacity(2<<30+1, 0)),
			code: codes.OutOfRange, msgs: []string{`volume "pvc-c"`, "size 2147483649 exceeds maxSize 2Gi", `LayerSet "tools"`}},
		{name: "limit_bytes above maxSize", req: ctrlCreateReq("pvc-d", ctrlWithCapacity(0, 3<<30)),
			code: codes.OutOfRange, msgs: []string{"size 3Gi exceeds maxSize 2Gi"}},
		{name: "upperSizeHint above maxSize", req: ctrlCreateReq("pvc-e", ctrlWithParam(paramUpperSizeHint, "3Gi")),
			code: codes.OutOfRange, msgs: []string{"size 3Gi exceeds maxSize 2Gi"}},
		{name: "no size, no defaultSize: unlimited", req: ctrlCreateReq("pvc-f")},
		{name: "no size: defaultSize", req: ctrlCreateReq("pvc-g", ctrlWithParam(names.ParamLayerSet, "defaults")),
			capacity: 256 << 20, size: "256Mi"},
		{name: "a size wins over defaultSize", req: ctrlCreateReq("pvc-h", ctrlWithParam(names.ParamLayerSet, "defaults"), ctrlWithCapacity(512<<20, 0)),
			capacity: 512 << 20, size: "512Mi"},
		{name: "upperSizeHint wins over defaultSize", req: ctrlCreateReq("pvc-i", ctrlWithParam(names.ParamLayerSet, "defaults"), ctrlWithParam(paramUpperSizeHint, "128Mi")),
			capacity: 128 << 20, size: "128Mi"},
		{name: "no limits", req: ctrlCreateReq("pvc-j", ctrlWithParam(names.ParamLayerSet, "free"), ctrlWithCapacity(names.MaxSize, 0)),
			capacity: names.MaxSize, size: "1Pi"},
		{name: "defaultSize above maxSize", req: ctrlCreateReq("pvc-k", ctrlWithParam(names.ParamLayerSet, "broken")),
			code: codes.OutOfRange, msgs: []string{"size 4Gi exceeds maxSize 1Gi", `"broken"`}},
		{name: "defaultSize below the smallest size", req: ctrlCreateReq("pvc-m", ctrlWithParam(names.ParamLayerSet, "tiny")),
			code: codes.OutOfRange, msgs: []string{`LayerSet "tiny": defaultSize`, "4Ki", "smallest"}},
		{name: "read-only volumes are bounded too", req: ctrlCreateReq("pvc-l", ctrlWithCaps(ctrlMountCap(ctrlROX)), ctrlWithCapacity(3<<30, 0)),
			code: codes.OutOfRange, msgs: []string{"exceeds maxSize 2Gi"}},
	}
	c := newTestController(t, t.TempDir(), cat)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.CreateVolume(t.Context(), tt.req)
			ctrlWantStatus(t, err, tt.code, tt.msgs...)
			if tt.code != codes.OK {
				if ok, _ := c.VolumeExists(t.Context(), tt.req.GetName()); ok {
					t.Errorf("a refused volume %s was recorded", tt.req.GetName())
				}
				return
			}
			v := resp.GetVolume()
			if v.GetCapacityBytes() != tt.capacity || v.GetVolumeContext()[names.ContextSize] != tt.size {
				t.Errorf("capacity %d, context %v; want %d and size %q", v.GetCapacityBytes(), v.GetVolumeContext(), tt.capacity, tt.size)
			}
		})
	}
}
