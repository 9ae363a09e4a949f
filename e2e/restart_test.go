//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// pluginProcess finds the node plugin's process on the node: the image's
// entrypoint /layerset-csi run with the node command.
func pluginProcess() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmdline, []byte{0})
		// The entrypoint's own path, not any layerset-csi: a benchmark or a
		// test on the same machine may run a node plugin of its own.
		if len(args) > 1 && string(args[0]) == "/layerset-csi" && string(args[1]) == "node" {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("%d node plugin processes (%v), want 1", len(found), found)
	}
	return found[0], nil
}

// checkServing checks that pod still reads its volume and writes to it.
func (c *cluster) checkServing(t testing.TB, pod, when string) {
	t.Helper()
	want := when + "\n# os: layer 1\n"
	script := fmt.Sprintf("echo %s >>%s/log.txt && tail -n 1 %s/log.txt && cat %s/usr/lib/python3.13/os.py", when, mountPath, mountPath, mountPath)
	if got, err := c.exec(pod, script); err != nil || got != want {
		t.Errorf("pod %s %s: read back %q (%v), want %q", pod, when, got, err, want)
	}
}

// testPluginRestart is scenario 7: the node plugin dies (SIGKILL) while
// pods use its volumes, and then its pod is deleted and replaced by the
// DaemonSet; the pods keep reading and writing throughout, the restarted
// plugin serves new pods, and the old pods unmount cleanly when deleted.
func testPluginRestart(t *testing.T, c *cluster) {
	_, pvc := c.staticPV(t, "e2e-restart", "demo", corev1.ReadWriteOnce)
	inline, _ := c.runPod(t, c.testPod("restart-inline", inlineVolume("demo", false)))
	claimed, _ := c.runPod(t, c.testPod("restart-claim", claimVolume(pvc.Name, false)))
	pods := []*corev1.Pod{inline, claimed}
	for _, p := range pods {
		c.checkServing(t, p.Name, "before")
	}

	plugin, _ := c.rollout(t)
	pid, err := pluginProcess()
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the node plugin (pid %d): %v", pid, err)
	}
	for _, p := range pods {
		c.checkServing(t, p.Name, "killed")
	}
	c.eventually(t, podTimeout, "node plugin container restarted and ready", func(ctx context.Context) error {
		var p corev1.Pod
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(&plugin), &p); err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].RestartCount < 1 || !podReady(&p) {
			return fmt.Errorf("container statuses %+v", p.Status.ContainerStatuses)
		}
		return nil
	})
	fresh, _ := c.runPod(t, c.testPod("restart-after-kill", inlineVolume("demo", false)))
	c.checkDemoTree(t, fresh.Name)
	pods = append(pods, fresh)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = c.client.Delete(ctx, &plugin, client.GracePeriodSeconds(0))
	cancel()
	if err != nil {
		t.Fatalf("deleting node plugin pod %s: %v", plugin.Name, err)
	}
	for _, p := range pods {
		c.checkServing(t, p.Name, "deleted")
	}
	replaced, _ := c.rollout(t)
	if replaced.UID == plugin.UID {
		t.Fatalf("node plugin pod %s was not replaced", plugin.Name)
	}
	c.eventually(t, time.Minute, "csi.layerset.io in CSINode after the restart", func(ctx context.Context) error { return c.registered(ctx, true) })
	fresh, _ = c.runPod(t, c.testPod("restart-after-delete", inlineVolume("demo", false)))
	c.checkDemoTree(t, fresh.Name)
	pods = append(pods, fresh)

	for _, p := range pods {
		c.checkServing(t, p.Name, "replaced")
		m := c.podVolume(t, p)
		c.deleteAndWait(t, p)
		c.checkVolumeGone(t, m)
	}
}
