//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// Size of the content both kinds of pod get in testTimings.
const (
	bulkFiles    = 2000
	bulkFileSize = 8 << 10
)

// bulkLayer holds bulkFiles files of incompressible bytes under
// usr/lib/bulk, the same on every run.
func bulkLayer() []testimage.Entry {
	rng := rand.New(rand.NewChaCha8([32]byte{'e', '2', 'e'}))
	entries := []testimage.Entry{testimage.Dir("usr"), testimage.Dir("usr/lib"), testimage.Dir("usr/lib/bulk")}
	buf := make([]byte, bulkFileSize)
	for i := range bulkFiles {
		if i%100 == 0 {
			entries = append(entries, testimage.Dir(fmt.Sprintf("usr/lib/bulk/d%02d", i/100)))
		}
		for j := range buf {
			buf[j] = byte(rng.Uint32())
		}
		entries = append(entries, testimage.File(fmt.Sprintf("usr/lib/bulk/d%02d/f%04d", i/100, i), string(buf)))
	}
	return entries
}

// busyboxLayer is the node's busybox with the applets an init container
// copying files needs.
func busyboxLayer(t testing.TB) []testimage.Entry {
	t.Helper()
	bin, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox for the copying image (Debian's busybox-static): %v", err)
	}
	entries := []testimage.Entry{
		testimage.Dir("bin"), testimage.Dir("dev"), testimage.Dir("proc"), testimage.Dir("sys"), testimage.Dir("etc"),
		{Name: "tmp", Type: tar.TypeDir, Mode: 0o1777},
		{Name: "bin/busybox", Type: tar.TypeReg, Mode: 0o755, Body: string(bin)},
	}
	for _, applet := range []string{"sh", "cp", "sleep"} {
		entries = append(entries, testimage.Symlink("bin/"+applet, "busybox"))
	}
	return entries
}

// testTimings records how long a pod takes to run with a LayerSet volume,
// cold (layers pulled) and warm (cached on the node), beside a pod whose
// emptyDir an init container fills with the same content from its image,
// which is what a LayerSet volume replaces. Timings are reported, never
// asserted.
func testTimings(t *testing.T, c *cluster) {
	bulk := bulkLayer()
	c.push(t, "e2e/bulk:1", bulk)
	c.push(t, "e2e/bulk-copy:1", busyboxLayer(t), bulk)
	ls := &v1alpha1.LayerSet{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-bulk"},
		Spec:       v1alpha1.LayerSetSpec{Layers: []v1alpha1.LayerSource{{Image: c.registry.Host + "/e2e/bulk:1"}}},
	}
	c.create(t, ls)
	t.Cleanup(func() { c.deleteAndWait(t, ls) })
	c.waitReady(t, ls.Name)

	volumePod := func(name string) *corev1.Pod { return c.testPod(name, inlineVolume(ls.Name, false)) }
	copyPod := func(name string) *corev1.Pod {
		p := c.testPod(name, &corev1.Volume{Name: "layers", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		p.Spec.InitContainers = []corev1.Container{{
			Name:            "copy",
			Image:           c.registry.Host + "/e2e/bulk-copy:1",
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         []string{"/bin/cp", "-a", "/usr", mountPath + "/"},
			VolumeMounts:    []corev1.VolumeMount{{Name: "layers", MountPath: mountPath}},
		}}
		return p
	}
	plainPod := func(name string) *corev1.Pod { return c.testPod(name, nil) }

	// run starts a pod, checks it has the content, deletes it, and returns
	// the time from creation to Running.
	run := func(pod *corev1.Pod, check bool) time.Duration {
		p, d := c.runPod(t, pod)
		if check {
			want := fmt.Sprintf("%d\n", bulkFiles)
			if got := c.mustExec(t, p.Name, "ls "+mountPath+"/usr/lib/bulk/* | grep -c ^f"); got != want {
				t.Errorf("pod %s has %q files of the bulk content, want %q", p.Name, got, want)
			}
		}
		c.deleteAndWait(t, p)
		return d
	}
	label := fmt.Sprintf("(%d files, %d MiB)", bulkFiles, bulkFiles*bulkFileSize>>20)
	c.record(t, "pod Running: LayerSet volume, cold "+label, run(volumePod("cold-volume"), true))
	c.record(t, "pod Running: emptyDir + init copy, image cold", run(copyPod("cold-copy"), true))

	const rounds = 3
	var plain, volume, copied []time.Duration
	for i := range rounds {
		plain = append(plain, run(plainPod(fmt.Sprintf("plain-%d", i)), false))
		volume = append(volume, run(volumePod(fmt.Sprintf("warm-volume-%d", i)), i == 0))
		copied = append(copied, run(copyPod(fmt.Sprintf("warm-copy-%d", i)), i == 0))
	}
	c.record(t, "pod Running: no volume (median)", median(plain))
	c.record(t, "pod Running: LayerSet volume, warm (median)", median(volume))
	c.record(t, "pod Running: emptyDir + init copy, warm (median)", median(copied))
	t.Logf("a warm LayerSet volume is ready in %.2fx the time of copying the same content into an emptyDir",
		median(volume).Seconds()/median(copied).Seconds())
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
