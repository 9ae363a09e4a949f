//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// component selects the pods, and the DaemonSet or Deployment, of one
// component of the release: "node" or "controller".
func (c *cluster) component(name string) client.MatchingLabels {
	return client.MatchingLabels{"app.kubernetes.io/instance": c.release, "app.kubernetes.io/component": name}
}

// rollout waits until the release's node DaemonSet and controller
// Deployment run their current template on every pod, all ready, and
// returns their pods.
func (c *cluster) rollout(t testing.TB) (node, controller corev1.Pod) {
	t.Helper()
	c.eventually(t, podTimeout, "node plugin DaemonSet rolled out and ready", func(ctx context.Context) error {
		var list appsv1.DaemonSetList
		if err := c.client.List(ctx, &list, client.InNamespace(c.namespace), c.component("node")); err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d node DaemonSets, want 1", len(list.Items))
		}
		s := list.Items[0].Status
		if s.ObservedGeneration != list.Items[0].Generation || s.DesiredNumberScheduled != 1 ||
			s.UpdatedNumberScheduled != 1 || s.NumberReady != 1 || s.NumberAvailable != 1 {
			return fmt.Errorf("DaemonSet %s status %+v", list.Items[0].Name, s)
		}
		var err error
		node, err = c.onePod(ctx, "node")
		return err
	})
	c.eventually(t, podTimeout, "controller Deployment rolled out and available", func(ctx context.Context) error {
		var list appsv1.DeploymentList
		if err := c.client.List(ctx, &list, client.InNamespace(c.namespace), c.component("controller")); err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d controller Deployments, want 1", len(list.Items))
		}
		d := list.Items[0]
		if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != *d.Spec.Replicas ||
			d.Status.AvailableReplicas != *d.Spec.Replicas || d.Status.Replicas != *d.Spec.Replicas {
			return fmt.Errorf("Deployment %s status %+v", d.Name, d.Status)
		}
		var err error
		controller, err = c.onePod(ctx, "controller")
		return err
	})
	return node, controller
}

// onePod returns the one running, ready pod of a component.
func (c *cluster) onePod(ctx context.Context, component string) (corev1.Pod, error) {
	var pods corev1.PodList
	if err := c.client.List(ctx, &pods, client.InNamespace(c.namespace), c.component(component)); err != nil {
		return corev1.Pod{}, err
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		return corev1.Pod{}, fmt.Errorf("%d %s pods, want 1", len(live), component)
	}
	p := live[0]
	if p.Status.Phase != corev1.PodRunning || !podReady(&p) {
		return p, fmt.Errorf("%s pod %s is %s, ready %t", component, p.Name, p.Status.Phase, podReady(&p))
	}
	return p, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// registered reports, as an error, whether the kubelet lists the driver in
// the node's CSINode.
func (c *cluster) registered(ctx context.Context, want bool) error {
	var csiNode storagev1.CSINode
	if err := c.client.Get(ctx, client.ObjectKey{Name: c.node}, &csiNode); err != nil {
		return err
	}
	i := slices.IndexFunc(csiNode.Spec.Drivers, func(d storagev1.CSINodeDriver) bool { return d.Name == driverName })
	switch {
	case want && i < 0:
		return fmt.Errorf("CSINode %s lists %+v, not %s", c.node, csiNode.Spec.Drivers, driverName)
	case want && csiNode.Spec.Drivers[i].NodeID != c.node:
		return fmt.Errorf("CSINode %s: %s has node ID %q, want %q", c.node, driverName, csiNode.Spec.Drivers[i].NodeID, c.node)
	case !want && i >= 0:
		return fmt.Errorf("CSINode %s still lists %s", c.node, driverName)
	}
	return nil
}

// testControllerSteady runs after the scenarios that work the controller:
// its container never crashed. The one restart it tolerates, and reports,
// is the exit on a lost leader lease, which this node's API server causes
// when it stalls for longer than the renew deadline (its own log shows
// request handler timeouts then); the chart's termination message, the
// last log lines, tells that exit from any other.
func testControllerSteady(t *testing.T, c *cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := c.onePod(ctx, "controller")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range p.Status.ContainerStatuses {
		if s.RestartCount == 0 {
			continue
		}
		term := s.LastTerminationState.Terminated
		if term == nil {
			t.Errorf("controller pod %s: container %s restarted %d times, with no record of how", p.Name, s.Name, s.RestartCount)
			continue
		}
		how := fmt.Sprintf("last exit %d (%s) at %s: %s", term.ExitCode, term.Reason, term.FinishedAt.Format(time.RFC3339), lastLine(term.Message))
		if strings.Contains(term.Message, "leader election lost") {
			t.Logf("controller pod %s: container %s restarted %d times after losing its lease; %s", p.Name, s.Name, s.RestartCount, how)
			continue
		}
		t.Errorf("controller pod %s: container %s restarted %d times; %s", p.Name, s.Name, s.RestartCount, how)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// testInstall is scenario 1: after `helm install` with the e2e values, the
// node plugin DaemonSet and the controller Deployment run, each pod a single
// container (the built-in registration, health endpoint and provisioner
// stand in for the sidecars); the kubelet lists csi.layerset.io in the
// node's CSINode; the CSIDriver and the CRDs are there, the CRDs
// established; the node plugin answers its HTTP health endpoint.
func testInstall(t *testing.T, c *cluster) {
	node, controller := c.rollout(t)
	for _, p := range []corev1.Pod{node, controller} {
		if n := len(p.Spec.Containers); n != 1 {
			t.Errorf("pod %s has %d containers, want 1: the e2e values switch the sidecars off", p.Name, n)
		}
		for _, s := range p.Status.ContainerStatuses {
			if s.RestartCount != 0 {
				t.Errorf("pod %s: container %s restarted %d times", p.Name, s.Name, s.RestartCount)
			}
		}
	}
	c.eventually(t, time.Minute, "csi.layerset.io in CSINode", func(ctx context.Context) error { return c.registered(ctx, true) })

	var driver storagev1.CSIDriver
	c.get(t, client.ObjectKey{Name: driverName}, &driver)
	if driver.Spec.AttachRequired == nil || *driver.Spec.AttachRequired || driver.Spec.PodInfoOnMount == nil || !*driver.Spec.PodInfoOnMount {
		t.Errorf("CSIDriver %s: attachRequired %v, podInfoOnMount %v; want false, true", driverName, driver.Spec.AttachRequired, driver.Spec.PodInfoOnMount)
	}
	for _, mode := range []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent, storagev1.VolumeLifecycleEphemeral} {
		if !slices.Contains(driver.Spec.VolumeLifecycleModes, mode) {
			t.Errorf("CSIDriver %s: volumeLifecycleModes %v lack %s", driverName, driver.Spec.VolumeLifecycleModes, mode)
		}
	}
	for _, name := range []string{"layersets.layerset.io", "nodecaches.layerset.io"} {
		var crd apiextensionsv1.CustomResourceDefinition
		c.get(t, client.ObjectKey{Name: name}, &crd)
		established := slices.ContainsFunc(crd.Status.Conditions, func(cond apiextensionsv1.CustomResourceDefinitionCondition) bool {
			return cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue
		})
		if !established {
			t.Errorf("CRD %s not established: %+v", name, crd.Status.Conditions)
		}
	}

	// The kubelet's liveness probe asks the same URL.
	probe := node.Spec.Containers[0].LivenessProbe
	if probe == nil || probe.HTTPGet == nil {
		t.Fatalf("node plugin container has no HTTP liveness probe: %+v", probe)
	}
	url := fmt.Sprintf("http://%s:%s%s", node.Status.PodIP, probe.HTTPGet.Port.String(), probe.HTTPGet.Path)
	hc := http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("node plugin health endpoint: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if err := resp.Body.Close(); err != nil {
		t.Error(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: %s %s", url, resp.Status, body)
	}
}

// testUpgradeUninstall is scenario 9: `helm upgrade` with changed values
// rolls the node plugin and the controller to the new arguments and the
// driver keeps serving; `helm uninstall` then leaves no pod, mount or object
// of the release, and the kubelet forgets the driver. The CRDs, and with
// them the LayerSets, stay: the chart keeps them on purpose
// (crds.keep: true), so that uninstalling does not delete users' LayerSets.
func testUpgradeUninstall(t *testing.T, c *cluster) {
	oldNode, _ := c.rollout(t)
	args := []string{"upgrade", c.release, c.chart, "--namespace", c.namespace, "--wait", "--timeout", "3m"}
	for _, v := range c.values {
		args = append(args, "--values", v)
	}
	args = append(args, "--set", "logLevel=5", "--set", "node.cacheMaxBytes=2147483648")
	if _, err := c.helm(args...); err != nil {
		t.Fatal(err)
	}
	node, controller := c.rollout(t)
	if node.UID == oldNode.UID {
		t.Errorf("node plugin pod %s was not replaced by the upgrade", node.Name)
	}
	for _, w := range []struct {
		pod  corev1.Pod
		args []string
	}{{node, []string{"-v=5", "--cache-max-bytes=2147483648"}}, {controller, []string{"-v=5"}}} {
		for _, a := range w.args {
			if !slices.Contains(w.pod.Spec.Containers[0].Args, a) {
				t.Errorf("pod %s args %q lack %s after the upgrade", w.pod.Name, w.pod.Spec.Containers[0].Args, a)
			}
		}
	}
	c.eventually(t, time.Minute, "csi.layerset.io in CSINode after the upgrade", func(ctx context.Context) error { return c.registered(ctx, true) })
	pod, _ := c.runPod(t, c.testPod("after-upgrade", inlineVolume("demo", false)))
	if got := c.mustExec(t, pod.Name, "cat "+mountPath+"/etc/motd"); got != "composed by layerset-csi\n" {
		t.Errorf("after the upgrade, etc/motd = %q", got)
	}
	c.deleteAndWait(t, pod)

	// Nothing may use the driver any more when it goes.
	var pods corev1.PodList
	if err := c.client.List(context.Background(), &pods, client.InNamespace(c.ns)); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		t.Errorf("pod %s of an earlier scenario is left", p.Name)
	}

	if _, err := c.helm("uninstall", c.release, "--namespace", c.namespace, "--wait", "--timeout", "3m"); err != nil {
		t.Fatal(err)
	}
	c.eventually(t, teardownTimeout, "the release's pods gone", func(ctx context.Context) error {
		var pods corev1.PodList
		if err := c.client.List(ctx, &pods, client.InNamespace(c.namespace), client.MatchingLabels{"app.kubernetes.io/instance": c.release}); err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d pods left, %s first", n, pods.Items[0].Name)
		}
		return nil
	})
	c.eventually(t, time.Minute, "csi.layerset.io gone from CSINode", func(ctx context.Context) error { return c.registered(ctx, false) })

	kinds := "all,serviceaccounts,roles,rolebindings,clusterroles,clusterrolebindings,csidrivers,storageclasses,configmaps,secrets,services"
	if left := strings.TrimSpace(c.mustKubectl(t, "", "get", kinds, "-A", "-l", "app.kubernetes.io/instance="+c.release, "-o", "name")); left != "" {
		t.Errorf("objects of release %s left after helm uninstall:\n%s", c.release, left)
	}
	if err := c.client.Get(context.Background(), client.ObjectKey{Name: driverName}, &storagev1.CSIDriver{}); !apierrors.IsNotFound(err) {
		t.Errorf("CSIDriver %s after helm uninstall: %v, want not found", driverName, err)
	}
	// Leader election leaves a Lease the chart does not own.
	if out := strings.TrimSpace(c.mustKubectl(t, "", "get", "leases", "-n", c.namespace, "-o", "name")); out != "" {
		t.Errorf("leases left in %s after helm uninstall: %s", c.namespace, out)
	}

	mounts, err := readMounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if under(m.Target, c.storeDir) || under(m.Target, filepath.Join(c.kubeletDir, "plugins", "kubernetes.io", "csi")) ||
			strings.Contains(m.Target, "/volumes/kubernetes.io~csi/") {
			t.Errorf("mount left after helm uninstall: %s (%s)", m.Target, m.FSType)
		}
	}

	// Kept on purpose: the CRDs and the LayerSets.
	var crd apiextensionsv1.CustomResourceDefinition
	c.get(t, client.ObjectKey{Name: "layersets.layerset.io"}, &crd)
	if out, _ := json.Marshal(crd.Annotations); !strings.Contains(string(out), `"helm.sh/resource-policy":"keep"`) {
		t.Errorf("CRD layersets.layerset.io kept without helm.sh/resource-policy: keep: %s", out)
	}
}

// under reports whether path is dir or below it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
