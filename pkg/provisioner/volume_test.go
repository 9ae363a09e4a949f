package provisioner

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func testClaim(modes ...corev1.PersistentVolumeAccessMode) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "data", UID: types.UID("0b1c"), ResourceVersion: "7"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: modes,
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
	}
}

func testClass(change ...func(*storagev1.StorageClass)) *storagev1.StorageClass {
	c := &storagev1.StorageClass{
		ObjectMeta:   metav1.ObjectMeta{Name: "layers"},
		Provisioner:  names.DriverName,
		Parameters:   map[string]string{"layerSet": "tools"},
		MountOptions: []string{"noatime"},
	}
	for _, f := range change {
		f(c)
	}
	return c
}

func TestCreateRequest(t *testing.T) {
	mount := func(fs string, mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
		return &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs, MountFlags: []string{"noatime"}}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
		}
	}
	topo := topologyRequirement("node-a")
	for _, tc := range []struct {
		name   string
		claim  *corev1.PersistentVolumeClaim
		class  *storagev1.StorageClass
		params map[string]string
		caps   []*csi.VolumeCapability
		err    string
	}{{
		name:   "each access mode is a capability",
		claim:  testClaim(corev1.ReadWriteOnce, corev1.ReadOnlyMany),
		class:  testClass(),
		params: map[string]string{"layerSet": "tools"},
		caps: []*csi.VolumeCapability{
			mount("", csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER),
			mount("", csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY),
		},
	}, {
		name:   "ReadWriteOncePod is a single writer",
		claim:  testClaim(corev1.ReadWriteOncePod),
		class:  testClass(),
		params: map[string]string{"layerSet": "tools"},
		caps:   []*csi.VolumeCapability{mount("", csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)},
	}, {
		name:   "the file system type is the provisioner's, not the driver's",
		claim:  testClaim(corev1.ReadWriteMany),
		class:  testClass(func(c *storagev1.StorageClass) { c.Parameters[paramFSType] = "overlay" }),
		params: map[string]string{"layerSet": "tools"},
		caps:   []*csi.VolumeCapability{mount("overlay", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)},
	}, {
		name:  "secrets are refused",
		claim: testClaim(corev1.ReadWriteOnce),
		class: testClass(func(c *storagev1.StorageClass) { c.Parameters[reservedPrefix+"provisioner-secret-name"] = "s" }),
		err:   `"csi.storage.k8s.io/provisioner-secret-name" is not supported`,
	}, {
		name:  "unknown access modes are refused",
		claim: testClaim("ReadSometimes"),
		class: testClass(),
		err:   `access mode "ReadSometimes" is unknown`,
	}, {
		name: "block claims ask for block access",
		claim: func() *corev1.PersistentVolumeClaim {
			c := testClaim(corev1.ReadWriteOnce)
			c.Spec.VolumeMode = new(corev1.PersistentVolumeBlock)
			return c
		}(),
		class:  testClass(),
		params: map[string]string{"layerSet": "tools"},
		caps: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER},
		}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := createRequest(tc.claim, tc.class, topo)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Name != "pvc-0b1c" || req.CapacityRange.GetRequiredBytes() != 2<<30 || req.AccessibilityRequirements != topo {
				t.Errorf("name %q, capacity %v, topology %v", req.Name, req.CapacityRange, req.AccessibilityRequirements)
			}
			if !reflect.DeepEqual(req.Parameters, tc.params) {
				t.Errorf("parameters %v, want %v", req.Parameters, tc.params)
			}
			if len(req.VolumeCapabilities) != len(tc.caps) {
				t.Fatalf("capabilities %v, want %v", req.VolumeCapabilities, tc.caps)
			}
			for i := range tc.caps {
				if req.VolumeCapabilities[i].String() != tc.caps[i].String() {
					t.Errorf("capability %d: %v, want %v", i, req.VolumeCapabilities[i], tc.caps[i])
				}
			}
		})
	}
}

func TestPersistentVolume(t *testing.T) {
	claim := testClaim(corev1.ReadWriteOnce)
	retain := corev1.PersistentVolumeReclaimRetain
	for _, tc := range []struct {
		name      string
		class     *storagev1.StorageClass
		vol       *csi.Volume
		capacity  string
		finalizer bool
		affinity  *corev1.VolumeNodeAffinity
	}{{
		name:  "pinned writable volume, default reclaim policy",
		class: testClass(func(c *storagev1.StorageClass) { c.Parameters[paramFSType] = "overlay" }),
		vol: &csi.Volume{VolumeId: "pvc-0b1c", VolumeContext: map[string]string{"layerSet": "tools"},
			AccessibleTopology: []*csi.Topology{{Segments: map[string]string{names.TopologyKey: "node-a"}}}},
		capacity:  "2Gi",
		finalizer: true,
		affinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: names.TopologyKey, Operator: corev1.NodeSelectorOpIn, Values: []string{"node-a"}}},
		}}}},
	}, {
		name:     "retained, of a known size, on every node",
		class:    testClass(func(c *storagev1.StorageClass) { c.ReclaimPolicy = &retain }),
		vol:      &csi.Volume{VolumeId: "pvc-0b1c", CapacityBytes: 1 << 20, VolumeContext: map[string]string{"layerSet": "tools"}},
		capacity: "1Mi",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := createRequest(claim, tc.class, nil)
			if err != nil {
				t.Fatal(err)
			}
			pv := persistentVolume(claim, tc.class, req, tc.vol, names.DriverName)
			if pv.Name != "pvc-0b1c" || pv.Annotations[AnnProvisionedBy] != names.DriverName {
				t.Errorf("name %q, annotations %v", pv.Name, pv.Annotations)
			}
			if got := slices.Contains(pv.Finalizers, Finalizer); got != tc.finalizer {
				t.Errorf("finalizers %v: has %s %t, want %t", pv.Finalizers, Finalizer, got, tc.finalizer)
			}
			wantReclaim := corev1.PersistentVolumeReclaimDelete
			if tc.class.ReclaimPolicy != nil {
				wantReclaim = *tc.class.ReclaimPolicy
			}
			s := pv.Spec
			if s.PersistentVolumeReclaimPolicy != wantReclaim || s.StorageClassName != "layers" || !slices.Equal(s.MountOptions, []string{"noatime"}) ||
				!slices.Equal(s.AccessModes, claim.Spec.AccessModes) {
				t.Errorf("reclaim %s, class %q, mount options %v, access modes %v", s.PersistentVolumeReclaimPolicy, s.StorageClassName, s.MountOptions, s.AccessModes)
			}
			if q := s.Capacity[corev1.ResourceStorage]; q.Cmp(resource.MustParse(tc.capacity)) != 0 {
				t.Errorf("capacity %s, want %s", q.String(), tc.capacity)
			}
			if !reflect.DeepEqual(s.NodeAffinity, tc.affinity) {
				t.Errorf("node affinity %+v, want %+v", s.NodeAffinity, tc.affinity)
			}
			want := corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "team", Name: "data", UID: "0b1c", ResourceVersion: "7"}
			if s.ClaimRef == nil || *s.ClaimRef != want {
				t.Errorf("claimRef %+v, want %+v", s.ClaimRef, want)
			}
			c := s.CSI
			if c == nil || c.Driver != names.DriverName || c.VolumeHandle != "pvc-0b1c" || !reflect.DeepEqual(c.VolumeAttributes, tc.vol.VolumeContext) ||
				c.FSType != tc.class.Parameters[paramFSType] {
				t.Errorf("CSI source %+v", c)
			}
		})
	}
}

func TestClaimChecks(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	immediate := storagev1.VolumeBindingImmediate
	if !waitsForConsumer(testClass(func(c *storagev1.StorageClass) { c.VolumeBindingMode = &wffc })) ||
		waitsForConsumer(testClass(func(c *storagev1.StorageClass) { c.VolumeBindingMode = &immediate })) || waitsForConsumer(testClass()) {
		t.Error("waitsForConsumer: only WaitForFirstConsumer waits; unset means Immediate")
	}
	for _, tc := range []struct {
		modes []corev1.PersistentVolumeAccessMode
		want  bool
	}{
		{[]corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}, false},
		{[]corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany, corev1.ReadWriteOnce}, true},
		{[]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}, true},
	} {
		if got := writable(tc.modes); got != tc.want {
			t.Errorf("writable(%v) = %t", tc.modes, got)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*corev1.PersistentVolumeClaim)
		want   string
	}{
		{"plain", func(*corev1.PersistentVolumeClaim) {}, ""},
		{"selector", func(c *corev1.PersistentVolumeClaim) { c.Spec.Selector = &metav1.LabelSelector{} }, "selector"},
		{"clone", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "x"}
		}, "data sources"},
		{"populator", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "Thing", Name: "x"}
		}, "data sources"},
		{"attributes class", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeAttributesClassName = new("fast") }, `VolumeAttributesClass "fast"`},
	} {
		c := testClaim(corev1.ReadWriteOnce)
		tc.change(c)
		if got := unsupported(c); (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: unsupported = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestDeletionPolicy(t *testing.T) {
	now := metav1.NewTime(time.Now())
	pv := func(phase corev1.PersistentVolumePhase, reclaim corev1.PersistentVolumeReclaimPolicy, deleting bool, finalizers ...string) *corev1.PersistentVolume {
		p := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Finalizers: finalizers}}
		p.Spec.PersistentVolumeReclaimPolicy, p.Status.Phase = reclaim, phase
		if deleting {
			p.DeletionTimestamp = &now
		}
		return p
	}
	const (
		bound    = corev1.VolumeBound
		released = corev1.VolumeReleased
		del      = corev1.PersistentVolumeReclaimDelete
		retain   = corev1.PersistentVolumeReclaimRetain
	)
	for _, tc := range []struct {
		name          string
		pv            *corev1.PersistentVolume
		want, decided bool
		delete        bool
	}{
		{"bound, Delete: guarded", pv(bound, del, false), true, true, false},
		{"released, Delete: deleted", pv(released, del, false, Finalizer), false, false, true},
		{"released, Delete, being deleted with the finalizer: deleted", pv(released, del, true, Finalizer), false, false, true},
		{"released, Delete, being deleted, finalizer gone: done", pv(released, del, true), false, false, false},
		{"bound, being deleted: left to pv-protection", pv(bound, del, true, Finalizer), false, false, false},
		{"released, Retain: kept, unguarded", pv(released, retain, false, Finalizer), false, true, false},
		{"bound, Retain", pv(bound, retain, false), false, true, false},
		{"released, Recycle: kept", pv(released, corev1.PersistentVolumeReclaimRecycle, false), false, true, false},
	} {
		want, decided := wantsFinalizer(tc.pv)
		if want != tc.want || decided != tc.decided {
			t.Errorf("%s: wantsFinalizer = %t, %t; want %t, %t", tc.name, want, decided, tc.want, tc.decided)
		}
		if got := shouldDelete(tc.pv); got != tc.delete {
			t.Errorf("%s: shouldDelete = %t, want %t", tc.name, got, tc.delete)
		}
	}
}

func TestTruncateNote(t *testing.T) {
	long := strings.Repeat("é", maxNote)
	got := truncate(long)
	if len(got) > maxNote || !utf8.ValidString(got) || !strings.HasSuffix(got, "...") {
		t.Errorf("truncated note: %d bytes, valid UTF-8 %t", len(got), utf8.ValidString(got))
	}
	if truncate("short") != "short" {
		t.Error("a short note was changed")
	}
}
