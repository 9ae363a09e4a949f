package provisioner_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/controller"
	csicontroller "github.com/layerset/layerset-csi/pkg/csi/controller"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/provisioner"
	"github.com/layerset/layerset-csi/test/envtest"
)

// maxSizeCatalog resolves every LayerSet as one whose maxSize is max.
type maxSizeCatalog struct{ max resource.Quantity }

func (c maxSizeCatalog) Resolve(_ context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error) {
	return &v1alpha1.LayerSet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1alpha1.LayerSetSpec{MaxSize: &c.max}}, nil, nil
}

// grow asks for a new size in the claim, as `kubectl patch` would.
func (e env) grow(pvc *corev1.PersistentVolumeClaim, size string) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(pvc), pvc); err != nil {
			return err
		}
		pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
		return e.c.Update(e.ctx, pvc)
	})
}

// waitClaim waits until the claim and its volume satisfy cond.
func (e env) waitClaim(pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, cond func() error) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(pvc), pvc); err != nil {
			return err
		}
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(pv), pv); err != nil {
			return err
		}
		return cond()
	})
}

// resizeState checks what kubelet reads: the PV's capacity, and the
// claim's allocated size, resize status and resize conditions.
func resizeState(pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume, capacity, alloc string, st corev1.ClaimResourceStatus,
	conds ...corev1.PersistentVolumeClaimConditionType) error {
	if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.Cmp(resource.MustParse(capacity)) != 0 {
		return fmt.Errorf("PV capacity %s, want %s", got.String(), capacity)
	}
	if got := pvc.Status.AllocatedResources[corev1.ResourceStorage]; got.Cmp(resource.MustParse(alloc)) != 0 {
		return fmt.Errorf("allocatedResources %s, want %s", got.String(), alloc)
	}
	if got := pvc.Status.AllocatedResourceStatuses[corev1.ResourceStorage]; got != st {
		return fmt.Errorf("allocatedResourceStatuses %q, want %q", got, st)
	}
	for _, t := range conds {
		found := false
		for _, c := range pvc.Status.Conditions {
			found = found || (c.Type == t && c.Status == corev1.ConditionTrue)
		}
		if !found {
			return fmt.Errorf("conditions %+v lack %s", pvc.Status.Conditions, t)
		}
	}
	return nil
}

// countEvents counts the Events about the claim with this reason.
func (e env) countEvents(pvc *corev1.PersistentVolumeClaim, reason string) int {
	e.t.Helper()
	var list corev1.EventList
	if err := e.c.List(e.ctx, &list, client.InNamespace(pvc.Namespace)); err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, ev := range list.Items {
		if ev.InvolvedObject.UID == pvc.UID && ev.Reason == reason {
			n += max(1, int(ev.Count))
		}
	}
	return n
}

func TestResizer(t *testing.T) {
	cfg, c := envtest.Start(t)
	ctx := t.Context()
	ctrlSrv, err := csicontroller.New(ctx, csicontroller.Config{StateDir: t.TempDir(), Catalog: maxSizeCatalog{max: resource.MustParse("1Gi")}})
	if err != nil {
		t.Fatal(err)
	}
	e := env{t: t, ctx: ctx, c: c, ctrl: ctrlSrv}
	// It runs in the controller's manager, with the rights the RBAC
	// markers give it. The provisioner is TestProvisioner's (controller
	// names are unique in a process): volumes are made here as it makes
	// them.
	mgr, err := controller.NewManager(envtest.AsUser(t, cfg, "layerset-resizer", "rbac.go"), controller.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := provisioner.SetupResizer(mgr, provisioner.ResizerOptions{Controller: ctrlSrv}); err != nil {
		t.Fatal(err)
	}
	envtest.RunManager(t, ctx, mgr)

	growable := storageClass("growable", storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete)
	growable.AllowVolumeExpansion = ptrTo(true)
	shared := storageClass("growable-shared", storagev1.VolumeBindingImmediate, corev1.PersistentVolumeReclaimDelete)
	shared.AllowVolumeExpansion = ptrTo(true)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, growable, shared)
	// provisioned makes a claim of size and its volume, as the
	// provisioner does, and binds them.
	provisioned := func(e env, name, class string, mode corev1.PersistentVolumeAccessMode, size string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
		e.t.Helper()
		pvc := claim(name, class, mode, "")
		pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
		e.create(pvc)
		access := csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER // as the provisioner maps ReadWriteOnce
		if mode == corev1.ReadOnlyMany {
			access = csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
		}
		resp, err := ctrlSrv.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name:       "pvc-" + string(pvc.UID),
			Parameters: map[string]string{names.ParamLayerSet: "tools"},
			VolumeCapabilities: []*csi.VolumeCapability{{
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: access},
			}},
			CapacityRange: &csi.CapacityRange{RequiredBytes: pvc.Spec.Resources.Requests.Storage().Value()},
		})
		if err != nil {
			e.t.Fatal(err)
		}
		pv := staticVolume(resp.GetVolume().GetVolumeId(), class, mode, resource.NewQuantity(resp.GetVolume().GetCapacityBytes(), resource.BinarySI),
			resp.GetVolume().GetVolumeContext(), pvc)
		e.create(pv)
		e.bind(pv, pvc)
		return pvc, pv
	}

	t.Run("Grow", func(t *testing.T) {
		e := e
		e.t = t
		pvc, pv := provisioned(e, "data", "growable", corev1.ReadWriteOnce, "64Mi")
		if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.Cmp(resource.MustParse("64Mi")) != 0 || pv.Spec.CSI.VolumeAttributes[names.ContextSize] != "64Mi" {
			t.Fatalf("provisioned PV: capacity %s, attributes %v; want 64Mi and size 64Mi", got.String(), pv.Spec.CSI.VolumeAttributes)
		}
		e.grow(pvc, "128Mi")
		e.waitClaim(pvc, pv, func() error {
			return resizeState(pvc, pv, "128Mi", "128Mi", corev1.PersistentVolumeClaimNodeResizePending, corev1.PersistentVolumeClaimFileSystemResizePending)
		})
		e.event(pvc, "Resizing", "to 128Mi")
		e.event(pvc, "FileSystemResizeRequired", "file system resize")
		if got := pvc.Status.Capacity[corev1.ResourceStorage]; got.Cmp(resource.MustParse("64Mi")) != 0 {
			t.Errorf("status.capacity %s before kubelet expanded the volume, want 64Mi", got.String())
		}
		// The controller's record has the new size.
		resp, err := ctrlSrv.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: pv.Name, CapacityRange: &csi.CapacityRange{RequiredBytes: 128 << 20}})
		if err != nil || resp.GetCapacityBytes() != 128<<20 || !resp.GetNodeExpansionRequired() {
			t.Errorf("the record after the resize: %v, %v", resp, err)
		}

		// Looked at again (any change to the claim), nothing changes: the
		// node is to expand it now.
		pvRV, resizing := pv.ResourceVersion, e.countEvents(pvc, "Resizing")
		metav1.SetMetaDataLabel(&pvc.ObjectMeta, "touched", "yes")
		if err := c.Update(ctx, pvc); err != nil {
			t.Fatal(err)
		}
		touched := pvc.ResourceVersion
		consistently(t, 2*time.Second, func() error {
			var again corev1.PersistentVolumeClaim
			if err := c.Get(ctx, client.ObjectKeyFromObject(pvc), &again); err != nil {
				return err
			}
			if again.ResourceVersion != touched {
				return fmt.Errorf("claim changed after it was looked at again: %+v", again.Status)
			}
			return nil
		})
		if err := c.Get(ctx, client.ObjectKeyFromObject(pv), pv); err != nil || pv.ResourceVersion != pvRV {
			t.Errorf("PV changed by a second look: %v (resource version %s, was %s)", err, pv.ResourceVersion, pvRV)
		}
		if n := e.countEvents(pvc, "Resizing"); n != resizing {
			t.Errorf("%d Resizing events after a second look, was %d", n, resizing)
		}

		// kubelet expands it on the node and says so.
		envtest.Eventually(t, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pvc), pvc); err != nil {
				return err
			}
			pvc.Status.Capacity[corev1.ResourceStorage] = resource.MustParse("128Mi")
			pvc.Status.AllocatedResourceStatuses, pvc.Status.Conditions = nil, nil
			return c.Status().Update(ctx, pvc)
		})

		// Above the LayerSet's maxSize: refused, and said so.
		e.grow(pvc, "2Gi")
		e.event(pvc, "VolumeResizeFailed", "size 2Gi exceeds maxSize 1Gi")
		e.waitClaim(pvc, pv, func() error {
			return resizeState(pvc, pv, "128Mi", "2Gi", corev1.PersistentVolumeClaimControllerResizeInfeasible, corev1.PersistentVolumeClaimControllerResizeError)
		})
	})

	t.Run("Shrink", func(t *testing.T) {
		e := e
		e.t = t
		pvc, pv := provisioned(e, "shrunk", "growable", corev1.ReadWriteOnce, "64Mi")
		// The volume grew to 256Mi, and that was never written to the PV
		// (a resize cut short, a PV edited by hand): a request for 128Mi
		// would shrink it.
		if _, err := ctrlSrv.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: pv.Name, CapacityRange: &csi.CapacityRange{RequiredBytes: 256 << 20}}); err != nil {
			t.Fatal(err)
		}
		e.grow(pvc, "128Mi")
		e.event(pvc, "VolumeResizeFailed", "cannot shrink from 256Mi to 128Mi")
		e.waitClaim(pvc, pv, func() error {
			return resizeState(pvc, pv, "64Mi", "128Mi", corev1.PersistentVolumeClaimControllerResizeInfeasible, corev1.PersistentVolumeClaimControllerResizeError)
		})
		// A request the volume can grow to resizes it at once.
		e.grow(pvc, "512Mi")
		e.waitClaim(pvc, pv, func() error {
			return resizeState(pvc, pv, "512Mi", "512Mi", corev1.PersistentVolumeClaimNodeResizePending, corev1.PersistentVolumeClaimFileSystemResizePending)
		})
		for _, cond := range pvc.Status.Conditions {
			if cond.Type == corev1.PersistentVolumeClaimControllerResizeError {
				t.Errorf("condition %+v outlived the refusal", cond)
			}
		}
	})

	t.Run("ReadOnlyNeedsNoNode", func(t *testing.T) {
		e := e
		e.t = t
		pvc, pv := provisioned(e, "shared", "growable-shared", corev1.ReadOnlyMany, "64Mi")
		e.grow(pvc, "96Mi")
		e.waitClaim(pvc, pv, func() error {
			if got := pvc.Status.Capacity[corev1.ResourceStorage]; got.Cmp(resource.MustParse("96Mi")) != 0 {
				return fmt.Errorf("status.capacity %s, want 96Mi", got.String())
			}
			return resizeState(pvc, pv, "96Mi", "96Mi", "")
		})
		e.event(pvc, "VolumeResizeSuccessful", "succeeded")
		for _, cond := range pvc.Status.Conditions {
			if cond.Type == corev1.PersistentVolumeClaimResizing || cond.Type == corev1.PersistentVolumeClaimFileSystemResizePending {
				t.Errorf("condition %+v after the resize finished", cond)
			}
		}
	})

	t.Run("StaticVolume", func(t *testing.T) {
		e := e
		e.t = t
		pvc := claim("static", "growable", corev1.ReadWriteOnce, "")
		pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("64Mi")
		e.create(pvc)
		// Made by hand, sized by its attributes: no controller record.
		pv := staticVolume("static-tools", "growable", corev1.ReadWriteOnce, resource.NewQuantity(64<<20, resource.BinarySI),
			map[string]string{names.ContextLayerSet: "tools", names.ContextSize: "64Mi"}, pvc)
		e.create(pv)
		e.bind(pv, pvc)
		e.grow(pvc, "128Mi")
		e.event(pvc, "VolumeResizeFailed", "volume static-tools does not exist in the controller's records")
		e.waitClaim(pvc, pv, func() error {
			return resizeState(pvc, pv, "64Mi", "128Mi", corev1.PersistentVolumeClaimControllerResizeInfeasible, corev1.PersistentVolumeClaimControllerResizeError)
		})
	})
}

// staticVolume is a PersistentVolume of the driver for volume id, bound
// to the claim.
func staticVolume(id, class string, mode corev1.PersistentVolumeAccessMode, capacity *resource.Quantity, attrs map[string]string,
	pvc *corev1.PersistentVolumeClaim) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: id},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: *capacity},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{mode},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              class,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: pvc.Namespace, Name: pvc.Name, UID: pvc.UID},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: names.DriverName, VolumeHandle: id, VolumeAttributes: attrs,
			}},
		},
	}
}

func ptrTo[T any](v T) *T { return &v }

// consistently fails t if cond fails at any time within d: for what must
// not happen, given the controllers time to do it.
func consistently(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := cond(); err != nil {
			t.Fatal(err)
		}
	}
}
