//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// driverName is the CSI driver the chart installs.
const driverName = "csi.layerset.io"

// Timeouts of the waits. They bound how long a broken cluster takes to
// fail; none of them is an assertion on speed.
const (
	podTimeout      = 2 * time.Minute
	resolveTimeout  = time.Minute
	teardownTimeout = 2 * time.Minute
)

// cluster is the cluster under test, as e2e/cluster/up.sh and
// install-driver.sh describe it in cluster.env, and the namespace the
// scenarios create their objects in.
type cluster struct {
	client      client.Client
	kubeconfig  string
	kubectlBin  string
	helmBin     string
	node        string
	registry    *testimage.Registry
	registryLog string
	kubeletDir  string
	storeDir    string
	busybox     string
	release     string
	namespace   string // the driver's
	chart       string
	values      []string
	timings     string
	ns          string // the scenarios'
}

// newCluster connects to the cluster cluster.env describes and creates the
// scenarios' namespace, deleted when t ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := func(name string) string {
		v := os.Getenv(name)
		if v == "" {
			t.Fatalf("%s is not set: run `make e2e`, or `make cluster` and then `source .cache/e2e/cluster.env` before go test -tags e2e ./e2e", name)
		}
		return v
	}
	c := &cluster{
		kubeconfig:  env("KUBECONFIG"),
		kubectlBin:  env("E2E_KUBECTL"),
		helmBin:     env("E2E_HELM"),
		node:        env("E2E_NODE"),
		registry:    &testimage.Registry{Host: env("E2E_REGISTRY"), URL: "http://" + env("E2E_REGISTRY")},
		registryLog: env("E2E_REGISTRY_LOG"),
		kubeletDir:  env("E2E_KUBELET_DIR"),
		storeDir:    env("E2E_STORE_DIR"),
		busybox:     env("E2E_BUSYBOX_IMAGE"),
		release:     env("E2E_RELEASE"),
		namespace:   env("E2E_NAMESPACE"),
		chart:       env("E2E_CHART"),
		values:      strings.Split(env("E2E_VALUES"), ","),
		timings:     os.Getenv("E2E_TIMINGS"),
		ns:          "layerset-e2e",
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", c.kubeconfig, err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	if c.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		t.Fatalf("client for %s: %v", cfg.Host, err)
	}
	// A namespace of an earlier run against the same cluster may still be
	// terminating.
	c.eventually(t, teardownTimeout, "namespace "+c.ns+" created", func(ctx context.Context) error {
		return c.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}})
	})
	t.Cleanup(func() {
		// Pods first, and waited for, so that their volumes are gone
		// before the driver is, whatever scenario failed.
		ctx, cancel := context.WithTimeout(context.Background(), teardownTimeout)
		defer cancel()
		_ = c.client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(c.ns), client.GracePeriodSeconds(1))
		for ctx.Err() == nil {
			var pods corev1.PodList
			if err := c.client.List(ctx, &pods, client.InNamespace(c.ns)); err != nil || len(pods.Items) == 0 {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		_ = c.client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}})
	})
	// Pods are refused until the namespace has its default ServiceAccount.
	c.eventually(t, time.Minute, "ServiceAccount default in "+c.ns, func(ctx context.Context) error {
		return c.client.Get(ctx, client.ObjectKey{Namespace: c.ns, Name: "default"}, &corev1.ServiceAccount{})
	})
	return c
}

// eventually calls cond every 250 ms until it returns nil, and fails t with
// cond's last error when that has not happened within timeout.
func (c *cluster) eventually(t testing.TB, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 30*time.Second)
		err = cond(callCtx)
		callCancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: still not after %s: %v", what, timeout, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *cluster) create(t testing.TB, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.client.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func (c *cluster) get(t testing.TB, key client.ObjectKey, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.client.Get(ctx, key, obj); err != nil {
		t.Fatalf("getting %T %s: %v", obj, key, err)
	}
}

// deleteAndWait deletes obj and waits until the API server no longer has
// it: for a pod, until the kubelet has stopped it and unmounted its volumes.
func (c *cluster) deleteAndWait(t testing.TB, obj client.Object) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	err := c.client.Delete(ctx, obj, client.GracePeriodSeconds(1))
	cancel()
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("deleting %T %s: %v", obj, obj.GetName(), err)
	}
	key := client.ObjectKeyFromObject(obj)
	c.eventually(t, teardownTimeout, fmt.Sprintf("%T %s deleted", obj, key), func(ctx context.Context) error {
		err := c.client.Get(ctx, key, obj.DeepCopyObject().(client.Object))
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there")
	})
}

// kubectl runs kubectl against the cluster with stdin as its input and
// returns its standard output.
func (c *cluster) kubectl(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.kubectlBin, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (c *cluster) mustKubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := c.kubectl(stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// exec runs a shell command in the pod's container, as a user would with
// kubectl exec, and returns its output.
func (c *cluster) exec(pod, script string) (string, error) {
	return c.kubectl("", "exec", "-n", c.ns, pod, "--", "sh", "-c", script)
}

func (c *cluster) mustExec(t testing.TB, pod, script string) string {
	t.Helper()
	out, err := c.exec(pod, script)
	if err != nil {
		t.Fatalf("in pod %s: %v", pod, err)
	}
	return out
}

// helm runs the helm binary the cluster was set up with.
func (c *cluster) helm(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.helmBin, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// record logs a timing and appends it to the run's timings file, beside
// those of the cluster scripts.
func (c *cluster) record(t testing.TB, name string, d time.Duration) {
	t.Helper()
	t.Logf("timing: %s: %.2fs", name, d.Seconds())
	if c.timings == "" {
		return
	}
	f, err := os.OpenFile(c.timings, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Errorf("timings file: %v", err)
		return
	}
	if _, err := fmt.Fprintf(f, "%-44s %8.2fs\n", name, d.Seconds()); err != nil {
		t.Errorf("timings file: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("timings file: %v", err)
	}
}

// repoFile is the path of a file of the repository; tests run in e2e/.
func repoFile(t testing.TB, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("repository file %s: %v", rel, err)
	}
	return p
}
