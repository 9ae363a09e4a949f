//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

const mib = 1 << 20

// resizeTimeout bounds the wait for a claim's resize: a lost leader lease
// (renewDeadline) and its expiry (leaseDuration) fit in it.
const resizeTimeout = 3 * time.Minute

// noSpace is what a write past a volume's size fails with: ENOSPC where
// the node enforces it with a filesystem image (or an XFS quota), EDQUOT
// with an ext4 project quota.
var noSpace = regexp.MustCompile(`No space left on device|Disk quota exceeded`)

// unprivileged is a container's security context that keeps nothing a
// process could get past a size limit with: no privilege, no capability
// (CAP_SYS_RESOURCE lets ext4 quotas and reserved blocks be exceeded).
func unprivileged() *corev1.SecurityContext {
	no := false
	return &corev1.SecurityContext{
		Privileged:               &no,
		AllowPrivilegeEscalation: &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// fillScript writes n MiB of zeros to file in the volume, then says how dd
// ended and how large the file became, for the pod's log.
func fillScript(file string, n int) string {
	return fmt.Sprintf("dd if=/dev/zero of=%[1]s bs=1M count=%[2]d conv=fsync; echo \"dd exit $?\"; stat -c 'size %%s' %[1]s", file, n)
}

// fillingPod is an unprivileged test pod that, once running, writes n MiB
// to its volume with fillScript and then sleeps, keeping the volume in use.
func (c *cluster) fillingPod(name string, volume *corev1.Volume, n int) *corev1.Pod {
	p := c.testPod(name, volume)
	p.Spec.Containers[0].Command = []string{"sh", "-c", "grep ^CapEff: /proc/self/status; " + fillScript(mountPath+"/fill", n) + "; exec sleep 3600"}
	p.Spec.Containers[0].SecurityContext = unprivileged()
	return p
}

var (
	ddExit   = regexp.MustCompile(`(?m)^dd exit (\d+)$`)
	fileSize = regexp.MustCompile(`(?m)^size (\d+)$`)
	capNone  = regexp.MustCompile(`(?m)^CapEff:\s+0+$`)
)

// checkFilled waits for the log of a fillingPod and checks that its write
// of more than the volume's limit failed with ENOSPC or EDQUOT after
// nearly limit bytes: more than half of it, not more than all of it (the
// volume's init files take a little, and a filesystem image's metadata
// may).
func (c *cluster) checkFilled(t testing.TB, pod string, limit int64) {
	t.Helper()
	var log string
	c.eventually(t, time.Minute, "pod "+pod+"'s write done", func(context.Context) error {
		var err error
		if log, err = c.kubectl("", "logs", "-n", c.ns, pod); err != nil {
			return err
		}
		if !fileSize.MatchString(log) {
			return fmt.Errorf("log so far: %q", log)
		}
		return nil
	})
	if !capNone.MatchString(log) {
		t.Errorf("pod %s writes with capabilities, want none; log:\n%s", pod, log)
	}
	exit := ddExit.FindStringSubmatch(log)
	if exit == nil || exit[1] == "0" {
		t.Errorf("pod %s wrote past its volume's limit of %d MiB: dd succeeded; log:\n%s", pod, limit/mib, log)
	}
	if !noSpace.MatchString(log) {
		t.Errorf("pod %s's log does not say %q:\n%s", pod, noSpace, log)
	}
	size, _ := strconv.ParseInt(fileSize.FindStringSubmatch(log)[1], 10, 64)
	if size > limit || size <= limit/2 {
		t.Errorf("pod %s wrote %d bytes (%.1f MiB) before the volume was full, want at most its limit %d MiB and more than half of it; log:\n%s",
			pod, size, float64(size)/mib, limit/mib, log)
	}
	t.Logf("pod %s: %.1f MiB written into a volume of %d MiB, then %s", pod, float64(size)/mib, limit/mib, noSpace.FindString(log))
}

// imageMount is the mount of the filesystem image that holds a sized
// volume's upper where the node enforces sizes with images (a loop device
// mounted on the upper's parent, vol-ID/upper); ok is false where it uses
// project quotas.
func (c *cluster) imageMount(t testing.TB, upper string) (m mountEntry, ok bool) {
	t.Helper()
	mounts, err := readMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.Target == filepath.Dir(upper) {
			if m.FSType != "ext4" || !strings.HasPrefix(m.Source, "/dev/loop") {
				t.Errorf("the upper %s of a sized volume is on %s from %s, want an ext4 image on a loop device", upper, m.FSType, m.Source)
			}
			return m, true
		}
	}
	return mountEntry{}, false
}

// chartStorageClass creates the chart's StorageClass for layerSet, as
// `helm template` renders it with storageClass.create and the release's
// values, and deletes it when t ends.
func (c *cluster) chartStorageClass(t testing.TB, name, layerSet string) *storagev1.StorageClass {
	t.Helper()
	args := []string{"template", c.release, c.chart, "--namespace", c.namespace, "--show-only", "templates/storageclass.yaml"}
	for _, v := range c.values {
		args = append(args, "--values", v)
	}
	args = append(args, "--set", "storageClass.create=true", "--set", "storageClass.name="+name, "--set", "storageClass.layerSet="+layerSet)
	out, err := c.helm(args...)
	if err != nil {
		t.Fatal(err)
	}
	var sc storagev1.StorageClass
	if err := yaml.UnmarshalStrict([]byte(out), &sc); err != nil {
		t.Fatalf("the chart's StorageClass: %v:\n%s", err, out)
	}
	if sc.AllowVolumeExpansion == nil || !*sc.AllowVolumeExpansion || sc.VolumeBindingMode == nil ||
		*sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer || sc.Provisioner != driverName {
		t.Fatalf("the chart's StorageClass: provisioner %s, allowVolumeExpansion %v, volumeBindingMode %v; want %s, true, WaitForFirstConsumer:\n%s",
			sc.Provisioner, sc.AllowVolumeExpansion, sc.VolumeBindingMode, driverName, out)
	}
	c.create(t, &sc)
	t.Cleanup(func() { c.deleteAndWait(t, &sc) })
	return &sc
}

// testSizes is scenario 11: volumes have the size they ask for, enforced on
// what unprivileged pods write. A claim of the chart's StorageClass gets a
// PersistentVolume of its request, 64Mi; its pod cannot write 100Mi. Grown
// to 128Mi with its pod running, the claim's PersistentVolume and status
// show 128Mi (the controller's resizer, then the kubelet's NodeExpandVolume
// of the mounted volume) and the same pod now writes 100Mi, but not 64Mi
// more. A smaller request is refused by the API server. An inline volume of
// volumeAttributes.size 16Mi is limited the same way. Records how long pods
// take to run with a sized and an unsized inline volume, and the resize.
func testSizes(t *testing.T, c *cluster) {
	t.Run("claim", func(t *testing.T) { testSizedClaim(t, c) })
	t.Run("inline", func(t *testing.T) { testSizedInline(t, c) })
}

func testSizedClaim(t *testing.T, c *cluster) {
	sc := c.chartStorageClass(t, "e2e-sized", "demo")
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-sized", Namespace: c.ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &sc.Name,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("64Mi")}},
		},
	}
	c.create(t, pvc)
	pod := c.fillingPod("sized-claim", claimVolume(pvc.Name, false), 100)
	cleaned := false
	t.Cleanup(func() {
		if !cleaned { // a claim goes once no pod uses it
			c.deleteAndWait(t, pod)
			c.deleteAndWait(t, pvc)
		}
	})
	pod, d := c.runPod(t, pod)
	c.record(t, "pod Running: claim of 64Mi, provisioned", d)
	defer func() {
		if t.Failed() {
			t.Logf("events of claim %s:\n%s", pvc.Name, c.events(pvc.Name))
			t.Logf("events of pod %s:\n%s", pod.Name, c.events(pod.Name))
		}
	}()
	pvc = c.waitBound(t, pvc.Name)
	c.checkCapacity(t, pvc.Name, "64Mi")
	c.checkFilled(t, pod.Name, 64*mib)

	m := c.podVolume(t, pod)
	img, onImage := c.imageMount(t, m.Upper())
	t.Logf("claim %s: volume upper %s, on a filesystem image: %t", pvc.Name, m.Upper(), onImage)

	// Grown, with the pod running.
	start := time.Now()
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}`))
	if err := c.client.Patch(context.Background(), pvc, patch); err != nil {
		t.Fatalf("claim %s to 128Mi: %v", pvc.Name, err)
	}
	// Within seconds, unless the controller lost its lease meanwhile (see
	// testControllerSteady): its successor waits for the lease to expire.
	c.eventually(t, resizeTimeout, "PersistentVolume "+pvc.Spec.VolumeName+" at 128Mi", func(ctx context.Context) error {
		var pv corev1.PersistentVolume
		if err := c.client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
			return err
		}
		if size := pv.Spec.Capacity[corev1.ResourceStorage]; size.Cmp(resource.MustParse("128Mi")) != 0 {
			return fmt.Errorf("capacity %s", size.String())
		}
		return nil
	})
	c.record(t, "claim 64Mi -> 128Mi: PV capacity (controller)", time.Since(start))
	c.waitCapacity(t, pvc.Name, "128Mi")
	c.record(t, "claim 64Mi -> 128Mi: claim status (kubelet)", time.Since(start))
	c.checkCapacity(t, pvc.Name, "128Mi")
	script := "rm " + mountPath + "/fill && dd if=/dev/zero of=" + mountPath + "/fill bs=1M count=100 conv=fsync 2>/dev/null && stat -c %s " + mountPath + "/fill"
	if got := c.mustExec(t, pod.Name, script); got != fmt.Sprint(100*mib)+"\n" {
		t.Errorf("pod %s wrote %q bytes into its volume grown to 128Mi, want %d", pod.Name, got, 100*mib)
	}
	// The new limit holds: 100 MiB written, 64 more do not fit.
	out, err := c.exec(pod.Name, "{ "+fillScript(mountPath+"/more", 64)+"; } 2>&1")
	if !noSpace.MatchString(out) || !ddExit.MatchString(out) || ddExit.FindStringSubmatch(out)[1] == "0" {
		t.Errorf("pod %s writing 64 MiB more into its 128Mi volume holding 100 MiB: %q (%v); want %s", pod.Name, out, err, noSpace)
	}

	// Shrinking: the API server refuses a request below the claim's capacity.
	_, err = c.kubectl("", "patch", "pvc", pvc.Name, "-n", c.ns, "--type", "merge", "-p", `{"spec":{"resources":{"requests":{"storage":"32Mi"}}}}`)
	if err == nil || !strings.Contains(err.Error(), "spec.resources.requests.storage: Forbidden: field can not be less than") {
		t.Errorf("claim %s shrunk to 32Mi: %v; want the API server's Forbidden: field can not be less than status.capacity", pvc.Name, err)
	} else {
		t.Logf("shrinking claim %s refused: %s", pvc.Name, lastLine(err.Error()))
	}
	c.checkCapacity(t, pvc.Name, "128Mi")

	// The volume as the pod left it, and gone with its claim.
	c.rm(t, pod.Name, mountPath+"/fill", mountPath+"/more")
	c.checkProvisioned(t, pod, pvc, func() { c.deleteAndWait(t, pvc) })
	cleaned = true
	if onImage {
		c.checkVolumeGone(t, img)
	}
}

// checkCapacity checks the capacity of a bound claim and of its
// PersistentVolume, as `kubectl get` shows them.
func (c *cluster) checkCapacity(t testing.TB, claim, want string) {
	t.Helper()
	pvc := c.waitBound(t, claim)
	pvs := parseTable(t, c.mustKubectl(t, "", "get", "pv", pvc.Spec.VolumeName), "NAME", "CAPACITY", "CLAIM")
	if got := pvs[pvc.Spec.VolumeName]["CAPACITY"]; got != want {
		t.Errorf("kubectl get pv %s: CAPACITY %q, want %s", pvc.Spec.VolumeName, got, want)
	}
	pvcs := parseTable(t, c.mustKubectl(t, "", "get", "pvc", "-n", c.ns, claim), "NAME", "CAPACITY")
	if got := pvcs[claim]["CAPACITY"]; got != want {
		t.Errorf("kubectl get pvc %s: CAPACITY %q, want %s", claim, got, want)
	}
}

// waitCapacity waits until a claim and its PersistentVolume have the
// capacity want and the claim no resize in flight (no condition Resizing,
// FileSystemResizePending, ControllerResizeError or NodeResizeError, no
// allocatedResourceStatuses): the PersistentVolume's
// capacity is the controller's, the claim's status the kubelet's once it
// has expanded the mounted volume.
func (c *cluster) waitCapacity(t testing.TB, claim, want string) {
	t.Helper()
	q := resource.MustParse(want)
	c.eventually(t, resizeTimeout, "claim "+claim+" and its volume at "+want, func(ctx context.Context) error {
		var pvc corev1.PersistentVolumeClaim
		if err := c.client.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: claim}, &pvc); err != nil {
			return err
		}
		var pv corev1.PersistentVolume
		if err := c.client.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, &pv); err != nil {
			return err
		}
		pvSize, pvcSize := pv.Spec.Capacity[corev1.ResourceStorage], pvc.Status.Capacity[corev1.ResourceStorage]
		resizing := slices.ContainsFunc(pvc.Status.Conditions, func(cond corev1.PersistentVolumeClaimCondition) bool {
			return strings.Contains(string(cond.Type), "Resiz")
		})
		if pvSize.Cmp(q) != 0 || pvcSize.Cmp(q) != 0 || resizing || len(pvc.Status.AllocatedResourceStatuses) > 0 {
			return fmt.Errorf("PersistentVolume %s capacity %s; claim capacity %s, conditions %+v, allocatedResourceStatuses %v",
				pv.Name, pvSize.String(), pvcSize.String(), pvc.Status.Conditions, pvc.Status.AllocatedResourceStatuses)
		}
		return nil
	})
}

// rm removes files in a pod.
func (c *cluster) rm(t testing.TB, pod string, files ...string) {
	t.Helper()
	c.mustExec(t, pod, "rm -f "+strings.Join(files, " "))
}

func testSizedInline(t *testing.T, c *cluster) {
	sized := func(name string) *corev1.Pod {
		v := inlineVolume("demo", false)
		v.CSI.VolumeAttributes["size"] = "16Mi"
		return c.fillingPod(name, v, 32)
	}
	unsized := func(name string) *corev1.Pod {
		p := c.testPod(name, inlineVolume("demo", false))
		p.Spec.Containers[0].SecurityContext = unprivileged()
		return p
	}

	const rounds = 3
	var plain, limited []time.Duration
	for i := range rounds {
		p, d := c.runPod(t, unsized(fmt.Sprintf("unsized-inline-%d", i)))
		plain = append(plain, d)
		c.deleteAndWait(t, p)

		p, d = c.runPod(t, sized(fmt.Sprintf("sized-inline-%d", i)))
		limited = append(limited, d)
		if i == 0 {
			c.checkFilled(t, p.Name, 16*mib)
			m := c.podVolume(t, p)
			img, onImage := c.imageMount(t, m.Upper())
			c.deleteAndWait(t, p)
			c.checkVolumeGone(t, m)
			if onImage {
				c.checkVolumeGone(t, img)
			}
			continue
		}
		c.deleteAndWait(t, p)
	}
	c.record(t, "pod Running: inline volume, unsized (median)", median(plain))
	c.record(t, "pod Running: inline volume, size 16Mi (median)", median(limited))
}
