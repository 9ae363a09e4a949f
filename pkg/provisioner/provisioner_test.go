package provisioner_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	csicontroller "github.com/layerset/layerset-csi/pkg/csi/controller"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/pkg/controller"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/provisioner"
	"github.com/layerset/layerset-csi/test/envtest"
)

const (
	nodeName  = "node-a"
	namespace = "team"
)

type env struct {
	t    *testing.T
	ctx  context.Context
	c    client.Client
	ctrl *csicontroller.Server
}

func (e env) create(objs ...client.Object) {
	e.t.Helper()
	for _, o := range objs {
		if err := e.c.Create(e.ctx, o); err != nil {
			e.t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

func storageClass(name string, binding storagev1.VolumeBindingMode, reclaim corev1.PersistentVolumeReclaimPolicy) *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: name},
		Provisioner:       names.DriverName,
		Parameters:        map[string]string{names.ParamLayerSet: "tools"},
		ReclaimPolicy:     &reclaim,
		MountOptions:      []string{"noatime"},
		VolumeBindingMode: &binding,
	}
}

func claim(name, class string, mode corev1.PersistentVolumeAccessMode, node string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: &class,
			AccessModes:      []corev1.PersistentVolumeAccessMode{mode},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	if node != "" {
		c.Annotations = map[string]string{provisioner.AnnSelectedNode: node}
	}
	return c
}

// volumeOf waits for the PersistentVolume of the claim and returns it.
func (e env) volumeOf(claim *corev1.PersistentVolumeClaim) *corev1.PersistentVolume {
	e.t.Helper()
	var pv corev1.PersistentVolume
	envtest.Eventually(e.t, func() error {
		return e.c.Get(e.ctx, client.ObjectKey{Name: "pvc-" + string(claim.UID)}, &pv)
	})
	return &pv
}

// bind does what kube-controller-manager's PersistentVolume binder would:
// envtest runs no controller-manager.
func (e env) bind(pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim) {
	e.t.Helper()
	claim.Spec.VolumeName = pv.Name
	metav1.SetMetaDataAnnotation(&claim.ObjectMeta, "pv.kubernetes.io/bind-completed", "yes")
	metav1.SetMetaDataAnnotation(&claim.ObjectMeta, "pv.kubernetes.io/bound-by-controller", "yes")
	if err := e.c.Update(e.ctx, claim); err != nil {
		e.t.Fatal(err)
	}
	claim.Status.Phase, claim.Status.AccessModes, claim.Status.Capacity = corev1.ClaimBound, pv.Spec.AccessModes, pv.Spec.Capacity
	if err := e.c.Status().Update(e.ctx, claim); err != nil {
		e.t.Fatal(err)
	}
	e.setPhase(pv, corev1.VolumeBound)
}

func (e env) setPhase(pv *corev1.PersistentVolume, phase corev1.PersistentVolumePhase) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(pv), pv); err != nil {
			return err
		}
		pv.Status.Phase = phase
		return e.c.Status().Update(e.ctx, pv)
	})
}

// release deletes the claim and, as the binder and the pvc-protection
// controller of kube-controller-manager would, lets the deletion finish
// and marks its volume Released.
func (e env) release(pv *corev1.PersistentVolume, claim *corev1.PersistentVolumeClaim) {
	e.t.Helper()
	if err := e.c.Delete(e.ctx, claim); err != nil {
		e.t.Fatal(err)
	}
	e.dropFinalizers(claim, "kubernetes.io/pvc-protection")
	e.setPhase(pv, corev1.VolumeReleased)
}

// dropFinalizers removes the named finalizers, which controllers envtest
// does not run would remove, until the object is gone.
func (e env) dropFinalizers(obj client.Object, names ...string) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		err := e.c.Get(e.ctx, client.ObjectKeyFromObject(obj), obj)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if fs := slices.DeleteFunc(slices.Clone(obj.GetFinalizers()), func(f string) bool { return slices.Contains(names, f) }); len(fs) != len(obj.GetFinalizers()) {
			obj.SetFinalizers(fs)
			if err := e.c.Update(e.ctx, obj); err != nil {
				return err
			}
		}
		return fmt.Errorf("%s %s still exists, finalizers %v", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), obj.GetFinalizers())
	})
}

// event waits for an Event about the claim with this reason whose note
// says want.
func (e env) event(claim *corev1.PersistentVolumeClaim, reason, want string) {
	e.t.Helper()
	envtest.Eventually(e.t, func() error {
		var list corev1.EventList
		if err := e.c.List(e.ctx, &list, client.InNamespace(claim.Namespace)); err != nil {
			return err
		}
		var seen []string
		for _, ev := range list.Items {
			if ev.InvolvedObject.UID == claim.UID && ev.Reason == reason {
				if strings.Contains(ev.Message, want) {
					return nil
				}
				seen = append(seen, ev.Message)
			}
		}
		return fmt.Errorf("no %s Event about claim %s saying %q; seen %q", reason, claim.Name, want, seen)
	})
}

func (e env) volumeExists(id string) bool {
	e.t.Helper()
	ok, err := e.ctrl.VolumeExists(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ok
}

func TestProvisioner(t *testing.T) {
	cfg, _ := envtest.Start(t)
	ctx := t.Context()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, storagev1.AddToScheme, rbacv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctrlSrv, err := csicontroller.New(ctx, csicontroller.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	e := env{t: t, ctx: ctx, c: c, ctrl: ctrlSrv}

	// The provisioner runs in the controller's manager, with the rights
	// its RBAC markers give it.
	mgr, err := controller.NewManager(envtest.AsUser(t, cfg, "layerset-provisioner", "rbac.go"), controller.ManagerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := provisioner.Setup(mgr, provisioner.Options{Controller: ctrlSrv}); err != nil {
		t.Fatal(err)
	}
	envtest.RunManager(t, ctx, mgr)

	e.create(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName, Labels: map[string]string{names.TopologyKey: nodeName}}},
		storageClass("late", storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete),
		storageClass("late-retain", storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimRetain),
		storageClass("immediate", storagev1.VolumeBindingImmediate, corev1.PersistentVolumeReclaimDelete),
		&storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "elsewhere"}, Provisioner: "example.com/other"},
	)

	t.Run("WaitForFirstConsumer", func(t *testing.T) {
		e := e
		e.t = t
		pvc := claim("data", "late", corev1.ReadWriteOnce, "")
		e.create(pvc)
		// The scheduler picks a node for the claim's pod.
		metav1.SetMetaDataAnnotation(&pvc.ObjectMeta, provisioner.AnnSelectedNode, nodeName)
		if err := c.Update(ctx, pvc); err != nil {
			t.Fatal(err)
		}
		pv := e.volumeOf(pvc)
		s := pv.Spec
		if s.CSI == nil || s.CSI.Driver != names.DriverName || s.CSI.VolumeHandle != pv.Name ||
			s.CSI.VolumeAttributes[names.ContextLayerSet] != "tools" {
			t.Errorf("CSI source %+v, want driver %s, handle %s, attributes with layerSet tools", s.CSI, names.DriverName, pv.Name)
		}
		aff := s.NodeAffinity
		if aff == nil || aff.Required == nil || len(aff.Required.NodeSelectorTerms) != 1 ||
			!slices.EqualFunc(aff.Required.NodeSelectorTerms[0].MatchExpressions, []corev1.NodeSelectorRequirement{
				{Key: names.TopologyKey, Operator: corev1.NodeSelectorOpIn, Values: []string{nodeName}},
			}, func(a, b corev1.NodeSelectorRequirement) bool {
				return a.Key == b.Key && a.Operator == b.Operator && slices.Equal(a.Values, b.Values)
			}) {
			t.Errorf("node affinity %+v, want %s in [%s]", aff, names.TopologyKey, nodeName)
		}
		if ref := s.ClaimRef; ref == nil || ref.UID != pvc.UID || ref.Namespace != namespace || ref.Name != "data" {
			t.Errorf("claimRef %+v, want the claim", ref)
		}
		if s.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || s.StorageClassName != "late" ||
			!slices.Equal(s.MountOptions, []string{"noatime"}) || !slices.Equal(s.AccessModes, pvc.Spec.AccessModes) {
			t.Errorf("reclaim %s, class %q, mount options %v, access modes %v", s.PersistentVolumeReclaimPolicy, s.StorageClassName, s.MountOptions, s.AccessModes)
		}
		if pv.Annotations[provisioner.AnnProvisionedBy] != names.DriverName || !slices.Contains(pv.Finalizers, provisioner.Finalizer) {
			t.Errorf("annotations %v, finalizers %v", pv.Annotations, pv.Finalizers)
		}
		if !e.volumeExists(pv.Name) {
			t.Errorf("the controller has no record of volume %s", pv.Name)
		}
		e.event(pvc, "ProvisioningSucceeded", pv.Name)

		e.bind(pv, pvc)
		e.release(pv, pvc)
		// DeleteVolume, then the PersistentVolume; pv-protection is
		// kube-controller-manager's to remove.
		e.dropFinalizers(pv, "kubernetes.io/pv-protection")
		if e.volumeExists(pv.Name) {
			t.Errorf("volume %s is still recorded after its PersistentVolume was deleted", pv.Name)
		}
	})

	t.Run("RetainKeepsTheVolume", func(t *testing.T) {
		e := e
		e.t = t
		kept, gone := claim("kept", "late-retain", corev1.ReadWriteOnce, nodeName), claim("gone", "late", corev1.ReadWriteOnce, nodeName)
		e.create(kept, gone)
		keptPV, gonePV := e.volumeOf(kept), e.volumeOf(gone)
		if slices.Contains(keptPV.Finalizers, provisioner.Finalizer) {
			t.Errorf("a retained volume has finalizer %s", provisioner.Finalizer)
		}
		e.bind(keptPV, kept)
		e.bind(gonePV, gone)
		e.release(keptPV, kept)
		e.release(gonePV, gone)
		e.dropFinalizers(gonePV, "kubernetes.io/pv-protection")
		if err := c.Get(ctx, client.ObjectKeyFromObject(keptPV), keptPV); err != nil {
			t.Fatalf("the retained PersistentVolume, released before the deleted one: %v", err)
		}
		if !e.volumeExists(keptPV.Name) || keptPV.DeletionTimestamp != nil {
			t.Errorf("retained volume %s: recorded %t, deleting %v", keptPV.Name, e.volumeExists(keptPV.Name), keptPV.DeletionTimestamp)
		}
	})

	t.Run("Immediate", func(t *testing.T) {
		e := e
		e.t = t
		// Not this driver's class; created first, looked at first.
		foreign := claim("foreign", "elsewhere", corev1.ReadWriteOnce, "")
		shared := claim("shared", "immediate", corev1.ReadOnlyMany, "")
		e.create(foreign, shared)
		pv := e.volumeOf(shared)
		if pv.Spec.NodeAffinity != nil {
			t.Errorf("a read-only volume, which every node composes, has node affinity %+v", pv.Spec.NodeAffinity)
		}
		if pv.Spec.CSI.VolumeAttributes[names.ContextLayerSet] != "tools" {
			t.Errorf("volume attributes %v", pv.Spec.CSI.VolumeAttributes)
		}
		var other corev1.PersistentVolume
		if err := c.Get(ctx, client.ObjectKey{Name: "pvc-" + string(foreign.UID)}, &other); !apierrors.IsNotFound(err) {
			t.Errorf("a claim of another provisioner's class got a volume (%v)", err)
		}

		// A writable volume waits for a node to be named.
		scratch := claim("scratch", "immediate", corev1.ReadWriteOnce, "")
		e.create(scratch)
		e.event(scratch, "ProvisioningFailed", "WaitForFirstConsumer")
		if err := c.Get(ctx, client.ObjectKey{Name: "pvc-" + string(scratch.UID)}, &other); !apierrors.IsNotFound(err) {
			t.Errorf("a writable volume was provisioned with no node (%v)", err)
		}
		metav1.SetMetaDataAnnotation(&scratch.ObjectMeta, provisioner.AnnSelectedNode, nodeName)
		if err := c.Update(ctx, scratch); err != nil {
			t.Fatal(err)
		}
		if pv := e.volumeOf(scratch); pv.Spec.NodeAffinity == nil {
			t.Error("the writable volume has no node affinity")
		}
	})

	t.Run("MissingNodeIsRescheduled", func(t *testing.T) {
		e := e
		e.t = t
		pvc := claim("lost", "late", corev1.ReadWriteOnce, "node-that-left")
		e.create(pvc)
		e.event(pvc, "ProvisioningFailed", `"node-that-left" does not exist`)
		envtest.Eventually(t, func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(pvc), pvc); err != nil {
				return err
			}
			if n, ok := pvc.Annotations[provisioner.AnnSelectedNode]; ok {
				return fmt.Errorf("claim still has %s=%s", provisioner.AnnSelectedNode, n)
			}
			return nil
		})
	})

	t.Run("DeprecatedParameter", func(t *testing.T) {
		e := e
		e.t = t
		hinted := storageClass("hinted", storagev1.VolumeBindingWaitForFirstConsumer, corev1.PersistentVolumeReclaimDelete)
		hinted.Parameters["upperSizeHint"] = "8Gi"
		e.create(hinted)
		pvc := claim("hinted", "hinted", corev1.ReadWriteOnce, nodeName)
		e.create(pvc)
		e.event(pvc, "DeprecatedParameter", `StorageClass "hinted" sets parameter upperSizeHint=8Gi, which is deprecated and ignored: the claim's storage request, 1Gi, is the volume's size`)
		pv := e.volumeOf(pvc)
		if got := pv.Spec.Capacity[corev1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 || pv.Spec.CSI.VolumeAttributes[names.ContextSize] != "1Gi" {
			t.Errorf("capacity %s, volume attributes %v; want the claim's 1Gi", got.String(), pv.Spec.CSI.VolumeAttributes)
		}
	})

	t.Run("LayerSetRefused", func(t *testing.T) {
		e := e
		e.t = t
		bad := storageClass("bad", storagev1.VolumeBindingImmediate, corev1.PersistentVolumeReclaimDelete)
		bad.Parameters = map[string]string{names.ParamLayerSet: "Not A Name"}
		pvc := claim("refused", "bad", corev1.ReadOnlyMany, "")
		e.create(pvc) // before its class: the class's creation brings it back
		e.create(bad)
		e.event(pvc, "ProvisioningFailed", "not a valid LayerSet name")
		if e.volumeExists("pvc-" + string(pvc.UID)) {
			t.Error("a refused volume was recorded")
		}
	})
}
