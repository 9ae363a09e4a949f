//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// mountPath is where test pods mount their LayerSet volume.
const mountPath = "/layers"

// testPod is a busybox pod on the node that sleeps with volume mounted at
// mountPath (nil: no volume).
func (c *cluster) testPod(name string, volume *corev1.Volume) *corev1.Pod {
	grace := int64(1)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           c.busybox,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"sleep", "3600"},
			}},
		},
	}
	if volume != nil {
		p.Spec.Volumes = []corev1.Volume{*volume}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: volume.Name, MountPath: mountPath}}
	}
	return p
}

// inlineVolume is a CSI ephemeral inline volume of layerSet.
func inlineVolume(layerSet string, readOnly bool) *corev1.Volume {
	ro := readOnly
	return &corev1.Volume{Name: "layers", VolumeSource: corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{
		Driver:           driverName,
		ReadOnly:         &ro,
		VolumeAttributes: map[string]string{"layerSet": layerSet},
	}}}
}

// claimVolume mounts the PersistentVolumeClaim claim.
func claimVolume(claim string, readOnly bool) *corev1.Volume {
	return &corev1.Volume{Name: "layers", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: readOnly},
	}}
}

// runPod creates pod and waits until it runs; it returns the pod as it is
// then and how long that took from creation.
func (c *cluster) runPod(t testing.TB, pod *corev1.Pod) (*corev1.Pod, time.Duration) {
	t.Helper()
	start := time.Now()
	c.create(t, pod)
	return c.waitRunning(t, pod.Name), time.Since(start)
}

// waitRunning waits until the pod runs, polling often so that the time it
// took is measured closely. It fails early when the pod cannot start, with
// the pod's last events.
func (c *cluster) waitRunning(t testing.TB, name string) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	ctx, cancel := context.WithTimeout(context.Background(), podTimeout)
	defer cancel()
	for {
		err := c.client.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: name}, &pod)
		if err == nil {
			switch pod.Status.Phase {
			case corev1.PodRunning:
				return &pod
			case corev1.PodFailed, corev1.PodSucceeded:
				t.Fatalf("pod %s ended (%s) instead of running; events:\n%s", name, pod.Status.Phase, c.events(name))
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s not running after %s (phase %q, get error %v); events:\n%s", name, podTimeout, pod.Status.Phase, err, c.events(name))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// events lists the events about the object name in the scenarios' namespace.
func (c *cluster) events(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var list corev1.EventList
	if err := c.client.List(ctx, &list, client.InNamespace(c.ns)); err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name {
			fmt.Fprintf(&b, "  %s %s: %s\n", e.Type, e.Reason, e.Message)
		}
	}
	return b.String()
}

// podVolume is the mount of a pod's CSI volume in the node's mount table.
func (c *cluster) podVolume(t testing.TB, pod *corev1.Pod) mountEntry {
	t.Helper()
	// The kubelet publishes at pods/UID/volumes/kubernetes.io~csi/VOLUME/mount.
	var found mountEntry
	c.eventually(t, 30*time.Second, "mount of pod "+pod.Name+"'s volume", func(context.Context) error {
		mounts, err := readMounts()
		if err != nil {
			return err
		}
		prefix := filepath.Join(c.kubeletDir, "pods", string(pod.UID), "volumes", "kubernetes.io~csi")
		for _, m := range mounts {
			if strings.HasPrefix(m.Target, prefix+"/") && strings.HasSuffix(m.Target, "/mount") {
				found = m
				return nil
			}
		}
		return fmt.Errorf("no mount below %s", prefix)
	})
	return found
}

// checkVolumeGone checks that the node no longer has a pod's volume mounted
// where the kubelet had it published.
func (c *cluster) checkVolumeGone(t testing.TB, published mountEntry) {
	t.Helper()
	c.eventually(t, 30*time.Second, "unmount of "+published.Target, func(context.Context) error {
		mounts, err := readMounts()
		if err != nil {
			return err
		}
		for _, m := range mounts {
			if m.Target == published.Target {
				return fmt.Errorf("%s is still mounted (%s)", m.Target, m.FSType)
			}
		}
		return nil
	})
}
