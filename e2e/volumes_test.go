//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// checkDemoTree checks, from inside pod, that its volume holds the merged
// tree of the example LayerSet "demo": a file from every layer, nothing an
// upper layer deleted.
func (c *cluster) checkDemoTree(t testing.TB, pod string) {
	t.Helper()
	files := demoFiles()
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var script, want strings.Builder
	for _, p := range paths {
		fmt.Fprintf(&script, "echo '== %s'; cat %s/%s; ", p, mountPath, p)
		fmt.Fprintf(&want, "== %s\n%s", p, files[p])
	}
	for _, p := range demoGone() {
		fmt.Fprintf(&script, "test -e %s/%s && echo 'not deleted: %s'; ", mountPath, p, p)
	}
	script.WriteString("ls " + mountPath + "/usr/share/doc/python")
	want.WriteString("NEWS\n")
	if got := c.mustExec(t, pod, script.String()); got != want.String() {
		t.Errorf("pod %s: the volume's tree differs from demo's layers:\n got: %q\nwant: %q", pod, got, want.String())
	}
}

// testInlineVolume is scenario 3: a pod with a CSI ephemeral inline volume
// of "demo" sees the merged tree, with init files that name it and carry
// the ConfigMap's content; its writes succeed and stay its own; once the
// pod is deleted its mount and its upper are gone from the node.
func testInlineVolume(t *testing.T, c *cluster) {
	a, _ := c.runPod(t, c.testPod("inline-a", inlineVolume("demo", false)))
	c.checkDemoTree(t, a.Name)

	init := c.mustExec(t, a.Name, "cat "+mountPath+"/etc/volume-info; stat -c %a "+mountPath+"/etc/motd; cat "+mountPath+"/etc/motd "+mountPath+"/etc/app/settings.ini")
	wantPrefix := fmt.Sprintf("%s/%s on %s, volume ", c.ns, a.Name, c.node)
	wantSuffix := "\n444\ncomposed by layerset-csi\n[app]\ngreeting = hello from a ConfigMap\n"
	if !strings.HasPrefix(init, wantPrefix) || !strings.HasSuffix(init, wantSuffix) {
		t.Errorf("init files of pod %s:\n got: %q\nwant: %q...%q", a.Name, init, wantPrefix, wantSuffix)
	}

	osPy := mountPath + "/usr/lib/python3.13/os.py"
	got := c.mustExec(t, a.Name, "echo written >"+mountPath+"/new.txt && echo changed >"+osPy+" && rm "+mountPath+"/etc/os-release && cat "+mountPath+"/new.txt "+osPy)
	if got != "written\nchanged\n" {
		t.Errorf("pod %s reads back %q after writing, want %q", a.Name, got, "written\nchanged\n")
	}

	// Another pod's volume is composed of the same layers, untouched.
	b, _ := c.runPod(t, c.testPod("inline-b", inlineVolume("demo", false)))
	c.checkDemoTree(t, b.Name)
	if got := c.mustExec(t, b.Name, "test -e "+mountPath+"/new.txt && echo leaked; cat "+mountPath+"/etc/volume-info"); !strings.HasPrefix(got, fmt.Sprintf("%s/%s on ", c.ns, b.Name)) {
		t.Errorf("pod %s sees %q: another pod's write, or not its own init file", b.Name, got)
	}

	// On the node: an overlay whose upper, in the driver's store, holds
	// exactly what the pod wrote.
	ma := c.podVolume(t, a)
	upper := ma.Upper()
	if ma.FSType != "overlay" || !under(upper, c.storeDir) {
		t.Fatalf("pod %s's volume is mounted as %s with upperdir %q, want an overlay with its upper in %s", a.Name, ma.FSType, upper, c.storeDir)
	}
	if data, err := readFile(upper, "new.txt"); err != nil || data != "written\n" {
		t.Errorf("upper %s: new.txt = %q, %v", upper, data, err)
	}

	c.deleteAndWait(t, a)
	c.checkVolumeGone(t, ma)
	c.eventually(t, teardownTimeout, "upper of pod "+a.Name+" removed", func(context.Context) error {
		if _, err := os.Stat(upper); err == nil {
			return fmt.Errorf("%s still exists", upper)
		}
		return nil
	})
	mb := c.podVolume(t, b)
	c.deleteAndWait(t, b)
	c.checkVolumeGone(t, mb)
}

// staticPV is a PersistentVolume made by hand for layerSet, and its claim,
// as deploy/examples/static-pv-pvc.yaml and readonly-shared.yaml make them.
func (c *cluster) staticPV(t testing.TB, name, layerSet string, mode corev1.PersistentVolumeAccessMode) (*corev1.PersistentVolume, *corev1.PersistentVolumeClaim) {
	t.Helper()
	empty := ""
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{mode},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              "",
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:           driverName,
				VolumeHandle:     name,
				ReadOnly:         mode == corev1.ReadOnlyMany,
				VolumeAttributes: map[string]string{"layerSet": layerSet},
			}},
		},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{mode},
			StorageClassName: &empty,
			VolumeName:       name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
	c.create(t, pv)
	c.create(t, pvc)
	t.Cleanup(func() {
		c.deleteAndWait(t, pvc)
		c.deleteAndWait(t, pv)
	})
	c.waitBound(t, pvc.Name)
	return pv, pvc
}

func (c *cluster) waitBound(t testing.TB, claim string) *corev1.PersistentVolumeClaim {
	t.Helper()
	var pvc corev1.PersistentVolumeClaim
	c.eventually(t, podTimeout, "claim "+claim+" Bound", func(ctx context.Context) error {
		if err := c.client.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: claim}, &pvc); err != nil {
			return err
		}
		if pvc.Status.Phase != corev1.ClaimBound {
			return fmt.Errorf("phase %s", pvc.Status.Phase)
		}
		return nil
	})
	return &pvc
}

// testStaticPV is scenario 4: a pod writes to a volume of a static
// PersistentVolume and is deleted; the volume is unmounted but its upper
// stays on the node, and a new pod on the same claim reads the data back.
func testStaticPV(t *testing.T, c *cluster) {
	_, pvc := c.staticPV(t, "e2e-static", "demo", corev1.ReadWriteOnce)
	first, _ := c.runPod(t, c.testPod("static-1", claimVolume(pvc.Name, false)))
	c.checkDemoTree(t, first.Name)
	c.mustExec(t, first.Name, "echo 'kept by static-1' >"+mountPath+"/data.txt")
	m := c.podVolume(t, first)
	upper := m.Upper()
	if !under(upper, c.storeDir) {
		t.Fatalf("pod %s's volume has upperdir %q, want one in %s", first.Name, upper, c.storeDir)
	}
	c.deleteAndWait(t, first)
	c.checkVolumeGone(t, m)
	if data, err := readFile(upper, "data.txt"); err != nil || data != "kept by static-1\n" {
		t.Fatalf("after pod %s went, its upper %s holds data.txt %q (%v), want it kept", first.Name, upper, data, err)
	}

	second, _ := c.runPod(t, c.testPod("static-2", claimVolume(pvc.Name, false)))
	if got := c.mustExec(t, second.Name, "cat "+mountPath+"/data.txt"); got != "kept by static-1\n" {
		t.Errorf("pod %s reads %q from the claim, want what static-1 wrote", second.Name, got)
	}
	c.checkDemoTree(t, second.Name)
	m2 := c.podVolume(t, second)
	c.deleteAndWait(t, second)
	c.checkVolumeGone(t, m2)
}

// testProvisioned is scenario 5: a StorageClass with WaitForFirstConsumer
// and a claim of it, and a generic ephemeral volume of it: each is
// provisioned and bound when its pod is scheduled, and mounted; deleting the
// claim removes the PersistentVolume and, on the node, the upper.
func testProvisioned(t *testing.T, c *cluster) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	reclaim := corev1.PersistentVolumeReclaimDelete
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "e2e-demo"},
		Provisioner:       driverName,
		Parameters:        map[string]string{"layerSet": "demo"},
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &wffc,
	}
	c.create(t, sc)
	t.Cleanup(func() { c.deleteAndWait(t, sc) })

	size := resource.MustParse("1Gi")
	claimSpec := corev1.PersistentVolumeClaimSpec{
		AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		StorageClassName: &sc.Name,
		Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
	}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "e2e-claim", Namespace: c.ns}, Spec: claimSpec}
	c.create(t, pvc)
	c.get(t, client.ObjectKeyFromObject(pvc), pvc)
	if pvc.Status.Phase != corev1.ClaimPending || pvc.Spec.VolumeName != "" {
		t.Errorf("claim %s is %s (volume %q) before any pod uses it, want Pending: the class waits for the first consumer", pvc.Name, pvc.Status.Phase, pvc.Spec.VolumeName)
	}
	pod, _ := c.runPod(t, c.testPod("provisioned", claimVolume(pvc.Name, false)))
	pvc = c.waitBound(t, pvc.Name)
	c.checkProvisioned(t, pod, pvc, func() { c.deleteAndWait(t, pvc) })

	ephemeral := c.testPod("ephemeral", &corev1.Volume{Name: "layers", VolumeSource: corev1.VolumeSource{
		Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: claimSpec}},
	}})
	pod, _ = c.runPod(t, ephemeral)
	// Kubernetes names the claim POD-VOLUME and deletes it with the pod.
	claim := c.waitBound(t, pod.Name+"-layers")
	c.checkProvisioned(t, pod, claim, func() {})
}

// checkProvisioned checks a running pod's provisioned volume, deletes the
// pod and then, with drop, its claim; the PersistentVolume must go, and the
// upper on the node.
func (c *cluster) checkProvisioned(t testing.TB, pod *corev1.Pod, pvc *corev1.PersistentVolumeClaim, drop func()) {
	t.Helper()
	var pv corev1.PersistentVolume
	c.get(t, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv)
	if pv.Spec.CSI == nil || pv.Spec.CSI.Driver != driverName {
		t.Fatalf("PersistentVolume %s of claim %s is not of %s: %+v", pv.Name, pvc.Name, driverName, pv.Spec.PersistentVolumeSource)
	}
	c.checkDemoTree(t, pod.Name)
	if got := c.mustExec(t, pod.Name, "echo mine >"+mountPath+"/mine.txt && cat "+mountPath+"/mine.txt"); got != "mine\n" {
		t.Errorf("pod %s reads back %q", pod.Name, got)
	}
	m := c.podVolume(t, pod)
	upper := m.Upper()
	if !under(upper, c.storeDir) {
		t.Fatalf("pod %s's volume has upperdir %q, want one in %s", pod.Name, upper, c.storeDir)
	}
	c.deleteAndWait(t, pod)
	c.checkVolumeGone(t, m)
	drop()
	c.eventually(t, teardownTimeout, "PersistentVolume "+pv.Name+" deleted with its claim", func(ctx context.Context) error {
		err := c.client.Get(ctx, client.ObjectKey{Name: pv.Name}, &corev1.PersistentVolume{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
	c.eventually(t, teardownTimeout, "upper "+upper+" removed from the node", func(context.Context) error {
		if _, err := os.Stat(upper); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
}

// testReadOnlyShared is scenario 6: one read-only volume of a LayerSet,
// mounted by several pods at once, as deploy/examples/readonly-shared.yaml
// does; every pod reads it and none can write to it.
func testReadOnlyShared(t *testing.T, c *cluster) {
	_, pvc := c.staticPV(t, "e2e-shared", "demo", corev1.ReadOnlyMany)
	var pods []*corev1.Pod
	for i := range 3 {
		p := c.testPod(fmt.Sprintf("shared-%d", i), claimVolume(pvc.Name, true))
		p.Spec.Containers[0].VolumeMounts[0].ReadOnly = true
		c.create(t, p)
		pods = append(pods, p)
	}
	// An inline volume can be read-only too.
	inline := c.testPod("shared-inline", inlineVolume("demo", true))
	c.create(t, inline)
	pods = append(pods, inline)

	var mounts []mountEntry
	for _, p := range pods {
		p = c.waitRunning(t, p.Name)
		if got := c.mustExec(t, p.Name, "cat "+mountPath+"/etc/motd"); got != "composed by layerset-csi\n" {
			t.Errorf("pod %s reads etc/motd %q", p.Name, got)
		}
		out, err := c.exec(p.Name, "touch "+mountPath+"/etc/motd")
		if err == nil || !strings.Contains(err.Error(), "Read-only file system") {
			t.Errorf("pod %s writing to its read-only volume: %q, %v; want EROFS", p.Name, out, err)
		}
		m := c.podVolume(t, p)
		if !m.ReadOnly && m.Upper() != "" {
			t.Errorf("pod %s's volume %s is mounted writable, with upper %q", p.Name, m.Target, m.Upper())
		}
		mounts = append(mounts, m)
	}
	for i, p := range pods {
		c.deleteAndWait(t, p)
		c.checkVolumeGone(t, mounts[i])
	}
}

// readFile reads name in dir on the node.
func readFile(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	return string(b), err
}
