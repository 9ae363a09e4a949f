package packaging

import (
	"context"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// cluster is a real kube-apiserver and etcd (no nodes, no controllers) and
// the tools pointed at it.
type cluster struct {
	client     client.Client
	kubeconfig string
	helm       string
	kubectl    string
	env        []string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := toolsDir(t, "helm", "kubectl", "kube-apiserver", "etcd")
	testEnv := &envtest.Environment{BinaryAssetsDirectory: dir}
	cfg, err := testEnv.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := testEnv.Stop(); err != nil {
			t.Errorf("stop the API server: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, testEnv.KubeConfig, 0o600); err != nil {
		t.Fatal(err)
	}
	return &cluster{
		client:     c,
		kubeconfig: kc,
		helm:       filepath.Join(dir, "helm"),
		kubectl:    filepath.Join(dir, "kubectl"),
		env:        helmEnv(t),
	}
}

func (c *cluster) helmRun(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, c.env, c.helm, append(args, "--kubeconfig", c.kubeconfig)...)
}

func (c *cluster) kubectlRun(t *testing.T, args ...string) string {
	t.Helper()
	return mustRun(t, c.env, c.kubectl, append(args, "--kubeconfig", c.kubeconfig)...)
}

// waitEstablished waits until every CRD of config/crd serves its API, as
// objects of those kinds can be created only then.
func (c *cluster) waitEstablished(ctx context.Context, t *testing.T) {
	t.Helper()
	for name := range sourceCRDs(t) {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var crd apiextensionsv1.CustomResourceDefinition
			if err := c.client.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s never became established: %v", name, err)
		}
	}
}

// TestInstall installs, upgrades and uninstalls the chart with the real
// helm against a real API server, then installs deploy/ with the real
// kubectl, and asserts what the API server holds after each step; last it
// dry-runs every example on the server.
func TestInstall(t *testing.T) {
	c := startCluster(t)
	ctx := t.Context()
	chart := chartDir(t)

	// install
	out := c.helmRun(t, "install", release, chart, "--namespace", namespace, "--create-namespace")
	for _, s := range []string{"kubectl -n " + namespace + " rollout status daemonset/" + nodeName, "kind: LayerSet", "driver: " + driverName} {
		if !strings.Contains(out, s) {
			t.Errorf("helm install's notes lack %q:\n%s", s, out)
		}
	}
	t.Run("install", func(t *testing.T) {
		checkInstallation(t, readInstallation(ctx, t, c.client), defaults(t))
	})
	c.waitEstablished(ctx, t)

	// upgrade: other values, and a chart whose CRD changed, as a new release
	// of layerset-csi would bring.
	upgraded := filepath.Join(t.TempDir(), "layerset-csi")
	if err := os.CopyFS(upgraded, os.DirFS(chart)); err != nil {
		t.Fatal(err)
	}
	addPrinterColumn(t, filepath.Join(upgraded, "files", "crds", "layerset.io_layersets.yaml"), "Upgraded")
	out = c.helmRun(t, "upgrade", release, upgraded, "--namespace", namespace,
		"-f", filepath.Join(chart, "ci", "microk8s-values.yaml"),
		"-f", filepath.Join(chart, "ci", "storageclass-values.yaml"),
		"-f", filepath.Join(chart, "ci", "external-resizer-values.yaml"),
		"--set", "sidecars.nodeDriverRegistrar.enabled=false", "--set", "controller.replicas=2",
		"--set", "node.quota=fallback", "--set", "storageClass.upperSizeHint=1Gi")
	t.Run("upgrade", func(t *testing.T) {
		if !strings.Contains(out, "storageClass.upperSizeHint is deprecated") {
			t.Errorf("helm upgrade with storageClass.upperSizeHint does not say it is deprecated:\n%s", out)
		}
		in := readInstallation(ctx, t, c.client)
		w := defaults(t)
		w.kubeletDir = "/var/snap/microk8s/common/var/lib/kubelet"
		w.storageClass = map[string]string{"layerSet": "demo", "upperSizeHint": "1Gi"}
		w.registrar = false
		w.replicas = 2
		w.externalResizer = true
		w.quota = "fallback"
		t.Run("CSIDriver", func(t *testing.T) { checkCSIDriver(t, in) })
		t.Run("node DaemonSet", func(t *testing.T) { checkNodeDaemonSet(t, in, w) })
		t.Run("controller Deployment", func(t *testing.T) { checkController(t, in, w) })
		t.Run("RBAC", func(t *testing.T) { checkRBAC(t, in, w) })
		t.Run("StorageClass", func(t *testing.T) { checkStorageClass(t, in, w) })
		// Helm never upgrades crds/; templated CRDs it does.
		crd := in.crds["layersets.layerset.io"]
		if crd == nil || !slices.ContainsFunc(crd.Spec.Versions[0].AdditionalPrinterColumns, func(c apiextensionsv1.CustomResourceColumnDefinition) bool {
			return c.Name == "Upgraded"
		}) {
			t.Errorf("helm upgrade did not upgrade the LayerSet CRD: no printer column Upgraded")
		}
	})

	// A LayerSet, to see it survive the uninstall with its CRD.
	c.waitEstablished(ctx, t)
	ls := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "layerset.io/v1alpha1", "kind": "LayerSet",
		"metadata": map[string]any{"name": "survivor"},
		"spec":     map[string]any{"layers": []any{map[string]any{"image": "registry.example/app:1"}}},
	}}
	if err := c.client.Create(ctx, ls); err != nil {
		t.Fatalf("create a LayerSet: %v", err)
	}

	// uninstall
	c.helmRun(t, "uninstall", release, "--namespace", namespace)
	t.Run("uninstall", func(t *testing.T) {
		in := readInstallation(ctx, t, c.client)
		left := len(in.csiDrivers) + len(in.daemonSets) + len(in.deployments) + len(in.serviceAccounts) +
			len(in.clusterRoles) + len(in.clusterRoleBindings) + len(in.roles) + len(in.roleBindings) + len(in.storageClasses)
		if left > 0 {
			t.Errorf("%d objects left after helm uninstall: DaemonSets %v, Deployments %v, ClusterRoles %v, StorageClasses %v, ...",
				left, slices.Sorted(maps.Keys(in.daemonSets)), slices.Sorted(maps.Keys(in.deployments)),
				slices.Sorted(maps.Keys(in.clusterRoles)), slices.Sorted(maps.Keys(in.storageClasses)))
		}
		if len(in.crds) != len(sourceCRDs(t)) {
			t.Errorf("CRDs after uninstall: %d, want all %d kept (helm.sh/resource-policy: keep)", len(in.crds), len(sourceCRDs(t)))
		}
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(ls.GroupVersionKind())
		if err := c.client.Get(ctx, client.ObjectKey{Name: "survivor"}, got); err != nil {
			t.Errorf("the LayerSet did not survive the uninstall: %v", err)
		}
	})

	// kubectl apply -f deploy/, over the CRDs the release left behind.
	c.kubectlRun(t, "apply", "-f", filepath.Join(repoRoot(t), "deploy"))
	t.Run("kubectl apply deploy", func(t *testing.T) {
		in := readInstallation(ctx, t, c.client, namespace)
		checkInstallation(t, in, defaults(t))
		if got := in.namespaces[namespace].Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			t.Errorf("namespace %s enforces %q, want privileged", namespace, got)
		}
	})

	t.Run("examples dry-run on the server", func(t *testing.T) { dryRunExamples(ctx, t, c) })
}

// dryRunExamples submits each example with --dry-run=server: the API server
// validates it completely (the LayerSet CRD's schema and CEL rules
// included) and stores nothing.
func dryRunExamples(ctx context.Context, t *testing.T, c *cluster) {
	// Pods need their ServiceAccount; kube-controller-manager, which makes
	// the default one, does not run here.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"}}
	if err := c.client.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	c.waitEstablished(ctx, t)
	root := filepath.Join(repoRoot(t), "deploy", "examples")
	var examples []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") {
			examples = append(examples, p)
		}
		return err
	})
	if err != nil || len(examples) < 5 {
		t.Fatalf("examples %v (%v): want at least five", examples, err)
	}
	for _, ex := range examples {
		rel, _ := filepath.Rel(root, ex)
		t.Run(rel, func(t *testing.T) {
			b, err := os.ReadFile(ex)
			if err != nil {
				t.Fatal(err)
			}
			want := len(decodeDocuments(t, string(b)))
			out := c.kubectlRun(t, "apply", "--dry-run=server", "-f", ex)
			if n := strings.Count(out, "(server dry run)"); n != want {
				t.Errorf("%d objects dry-run, want all %d:\n%s", n, want, out)
			}
		})
	}
	var sets unstructured.UnstructuredList
	sets.SetAPIVersion("layerset.io/v1alpha1")
	sets.SetKind("LayerSetList")
	if err := c.client.List(ctx, &sets); err != nil {
		t.Fatal(err)
	}
	for _, s := range sets.Items {
		if s.GetName() != "survivor" {
			t.Errorf("a dry run created LayerSet %s", s.GetName())
		}
	}

	// The dry runs mean something only if the server does validate: a
	// LayerSet whose init file escapes the volume must be refused.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(`apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: escape}
spec:
  init:
    files: [{path: ../etc/passwd, content: x}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := run(ctx, c.env, c.kubectl, "apply", "--dry-run=server", "-f", bad, "--kubeconfig", c.kubeconfig)
	if r.err == nil || !strings.Contains(r.stderr, "must not contain '..'") {
		t.Errorf("the server accepted a LayerSet with path ../etc/passwd (err %v):\n%s%s", r.err, r.stdout, r.stderr)
	}
}

// addPrinterColumn edits a CRD file the way a new release might: one more
// column for kubectl get.
func addPrinterColumn(t *testing.T, path, name string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(b, &crd); err != nil {
		t.Fatal(err)
	}
	v := &crd.Spec.Versions[0]
	v.AdditionalPrinterColumns = append(v.AdditionalPrinterColumns, apiextensionsv1.CustomResourceColumnDefinition{
		Name: name, Type: "string", JSONPath: ".metadata.name",
	})
	out, err := yaml.Marshal(&crd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
