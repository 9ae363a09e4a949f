//go:build e2e

package e2e

import (
	"archive/tar"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
	var copied []time.Duration
	for i := range rounds {
		copied = append(copied, run(copyPod(fmt.Sprintf("warm-copy-%d", i)), i == 0))
	}
	c.record(t, "pod Running: emptyDir + init copy, warm (median)", median(copied))

	// Warm-ups, not timed: the first pod of each kind after the copy pods,
	// and the check that a warm volume has the content.
	run(plainPod("warm-plain"), false)
	run(volumePod("warm-volume"), true)
	_, volume := podStartOverhead(t, c, plainPod, volumePod)
	t.Logf("a warm LayerSet volume is ready in %.2fx the time of copying the same content into an emptyDir",
		median(volume).Seconds()/median(copied).Seconds())
}

// overheadPods is how many pods of each kind podStartOverhead starts.
const overheadPods = 20

// podStartOverhead measures what a warm inline volume adds to a pod's
// start (issue 13: at most 50 ms): overheadPods pods with the volume and
// as many without, alternating, and which of the two goes first
// alternating too, so that drift on the node weighs on both alike. Each
// pod is timed from just before its creation to the watch event that
// shows it Running, and deleted, its volume torn down, before the next.
// It logs both medians and their difference, and returns the timings;
// like every timing here, nothing is asserted.
func podStartOverhead(t *testing.T, c *cluster, plainPod, volumePod func(name string) *corev1.Pod) (plain, volume []time.Duration) {
	w := c.watchClient(t)
	for i := range overheadPods {
		kinds := []func(){
			func() { plain = append(plain, c.timeStart(t, w, plainPod(fmt.Sprintf("start-plain-%02d", i)))) },
			func() { volume = append(volume, c.timeStart(t, w, volumePod(fmt.Sprintf("start-volume-%02d", i)))) },
		}
		if i%2 == 1 {
			slices.Reverse(kinds)
		}
		for _, run := range kinds {
			run()
		}
	}
	c.record(t, "pod Running: no volume (median)", median(plain))
	c.record(t, "pod Running: LayerSet volume, warm (median)", median(volume))
	c.record(t, "pod Running: warm LayerSet volume overhead", median(volume)-median(plain))
	t.Logf("pod start overhead: a warm inline LayerSet volume adds %+.1f ms to the median pod start "+
		"(%.1f ms with it, %.1f ms without; means %+.1f ms apart; %d pods each, alternating; spread %s with, %s without; goal: at most +50 ms)",
		ms(median(volume)-median(plain)), ms(median(volume)), ms(median(plain)), ms(mean(volume)-mean(plain)),
		overheadPods, spread(volume), spread(plain))
	return plain, volume
}

// watchClient is a client of the cluster that can watch.
func (c *cluster) watchClient(t *testing.T) client.WithWatch {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", c.kubeconfig, err)
	}
	w, err := client.NewWithWatch(cfg, client.Options{Scheme: c.client.Scheme()})
	if err != nil {
		t.Fatalf("watching client for %s: %v", cfg.Host, err)
	}
	return w
}

// timeStart creates pod, waits until it runs, deletes it and waits until
// it is gone, and returns the time from just before its creation to the
// watch event that shows it Running: a watch sees the kubelet's status
// update as the API server gets it, where polling would add up to its
// interval.
func (c *cluster) timeStart(t *testing.T, w client.WithWatch, pod *corev1.Pod) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	watcher, err := w.Watch(ctx, &corev1.PodList{}, client.InNamespace(c.ns), client.MatchingFields{"metadata.name": pod.Name})
	if err != nil {
		t.Fatalf("watching pod %s: %v", pod.Name, err)
	}
	defer watcher.Stop()
	start := time.Now()
	c.create(t, pod)
	d := waitRunningEvent(t, c, watcher, pod.Name, start)
	c.deleteAndWait(t, pod)
	return d
}

// waitRunningEvent reads watcher's events until pod name runs, and returns
// the time since start when that event came.
func waitRunningEvent(t *testing.T, c *cluster, watcher watch.Interface, name string, start time.Time) time.Duration {
	t.Helper()
	timeout := time.After(podTimeout)
	for {
		select {
		case ev, ok := <-watcher.ResultChan():
			if !ok {
				t.Fatalf("the watch of pod %s ended before it ran; events:\n%s", name, c.events(name))
			}
			p, isPod := ev.Object.(*corev1.Pod)
			if !isPod {
				continue // a watch error's Status; the channel closes after it
			}
			switch p.Status.Phase {
			case corev1.PodRunning:
				return time.Since(start)
			case corev1.PodFailed, corev1.PodSucceeded:
				t.Fatalf("pod %s ended (%s) instead of running; events:\n%s", name, p.Status.Phase, c.events(name))
			}
		case <-timeout:
			t.Fatalf("pod %s not running after %s; events:\n%s", name, podTimeout, c.events(name))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// spread is the range of ds, as "min-max ms".
func spread(ds []time.Duration) string {
	return fmt.Sprintf("%.0f-%.0f ms", ms(slices.Min(ds)), ms(slices.Max(ds)))
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
