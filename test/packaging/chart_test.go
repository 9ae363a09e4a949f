package packaging

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// kubeVersion is the Kubernetes version helm renders for, the one the
// install test's kube-apiserver reports.
const kubeVersion = "v1.37.1"

// chartCase is one configuration of the chart: values files from
// charts/layerset-csi/ci and --set flags, and what it must install.
type chartCase struct {
	name   string
	files  []string
	set    []string
	expect func(*want)
	// extra checks what want does not describe.
	extra func(*testing.T, *installation)
}

func chartCases() []chartCase {
	return []chartCase{
		{name: "defaults, no StorageClass"},
		{
			name:   "k3s kubelet path",
			files:  []string{"ci/k3s-values.yaml"},
			expect: func(w *want) { w.kubeletDir = "/var/lib/rancher/k3s/agent/kubelet" },
		},
		{
			name:   "microk8s kubelet path",
			files:  []string{"ci/microk8s-values.yaml"},
			expect: func(w *want) { w.kubeletDir = "/var/snap/microk8s/common/var/lib/kubelet" },
		},
		{
			name:  "built-in registration, health and provisioner",
			files: []string{"ci/builtin-values.yaml"},
			expect: func(w *want) {
				w.registrar, w.livenessProbe, w.provisioner = false, false, false
			},
		},
		{
			name:   "built-in registration only",
			set:    []string{"sidecars.nodeDriverRegistrar.enabled=false"},
			expect: func(w *want) { w.registrar = false },
		},
		{
			name:   "StorageClass of one LayerSet",
			files:  []string{"ci/storageclass-values.yaml"},
			expect: func(w *want) { w.storageClass = map[string]string{"layerSet": "demo"} },
		},
		{
			// Deprecated, still a parameter for one release.
			name:   "StorageClass with an upper size hint",
			files:  []string{"ci/storageclass-values.yaml"},
			set:    []string{"storageClass.upperSizeHint=1Gi"},
			expect: func(w *want) { w.storageClass = map[string]string{"layerSet": "demo", "upperSizeHint": "1Gi"} },
		},
		{
			name:   "external resizer",
			files:  []string{"ci/external-resizer-values.yaml"},
			expect: func(w *want) { w.externalResizer = true },
		},
		{
			name:  "external resizer, no leader election",
			files: []string{"ci/external-resizer-values.yaml"},
			set:   []string{"controller.leaderElection.enabled=false"},
			expect: func(w *want) {
				w.externalResizer = true
				w.leaderElect = false
			},
		},
		{
			name:   "project quotas only, own id range",
			set:    []string{"node.quota=project", "node.projectIDs=1000-1999"},
			expect: func(w *want) { w.quota, w.projectIDs = "project", "1000-1999" },
		},
		{
			name:   "sizes ignored",
			set:    []string{"node.quota=off"},
			expect: func(w *want) { w.quota = "off" },
		},
		{
			name:   "CRDs managed elsewhere",
			set:    []string{"crds.install=false"},
			expect: func(w *want) { w.crds = false },
		},
		{
			name:  "HA controller, metrics, confined references",
			files: []string{"ci/ha-metrics-values.yaml"},
			expect: func(w *want) {
				w.replicas = 2
				w.referenced = []string{"team-a", "team-b"}
				w.metricsServices = true
			},
			extra: func(t *testing.T, in *installation) {
				if n := in.other["ServiceMonitor"]; n != 2 {
					t.Errorf("%d ServiceMonitors, want one per component", n)
				}
			},
		},
		{
			name: "leases for a slow API server",
			set: []string{"controller.leaderElection.leaseDuration=60s", "controller.leaderElection.renewDeadline=40s",
				"controller.leaderElection.retryPeriod=5s"},
			expect: func(w *want) { w.leases = [3]string{"60s", "40s", "5s"} },
		},
		{
			name: "single controller without leader election, pinned image",
			set:  []string{"controller.leaderElection.enabled=false", "image.digest=sha256:" + strings.Repeat("ab", 32)},
			expect: func(w *want) {
				w.leaderElect = false
				w.image = "ghcr.io/layerset/layerset-csi@sha256:" + strings.Repeat("ab", 32)
			},
		},
	}
}

func (c chartCase) helmArgs(t *testing.T) []string {
	var args []string
	for _, f := range c.files {
		args = append(args, "-f", filepath.Join(chartDir(t), f))
	}
	for _, s := range c.set {
		args = append(args, "--set", s)
	}
	return args
}

func TestChartLint(t *testing.T) {
	helm := filepath.Join(toolsDir(t, "helm"), "helm")
	env := helmEnv(t)
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir(t), "--kube-version", kubeVersion}, c.helmArgs(t)...)
			mustRun(t, env, helm, args...)
		})
	}
}

func TestChartTemplate(t *testing.T) {
	helm := filepath.Join(toolsDir(t, "helm"), "helm")
	env := helmEnv(t)
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}, c.helmArgs(t)...)
			in := parseManifests(t, mustRun(t, env, helm, args...))
			w := defaults(t)
			if c.expect != nil {
				c.expect(&w)
			}
			checkInstallation(t, in, w)
			if c.extra != nil {
				c.extra(t, in)
			}
			if len(in.namespaces) > 0 {
				t.Errorf("the chart renders Namespaces %v; the release namespace is Helm's", in.namespaces)
			}
		})
	}
}

// TestChartRejects feeds values the chart must refuse, each with a message
// that names the problem.
func TestChartRejects(t *testing.T) {
	helm := filepath.Join(toolsDir(t, "helm"), "helm")
	env := helmEnv(t)
	tests := []struct {
		name   string
		set    []string
		errHas []string
	}{
		{"relative kubelet dir", []string{"kubeletRootDir=var/lib/kubelet"}, []string{"kubeletRootDir"}},
		{"kubelet dir with trailing slash", []string{"kubeletRootDir=/var/lib/kubelet/"}, []string{"kubeletRootDir"}},
		{"misspelt value", []string{"node.storDir=/x"}, []string{"storDir"}},
		{"unknown pull policy", []string{"image.pullPolicy=Sometimes"}, []string{"pullPolicy"}},
		{"port out of range", []string{"metrics.port=70000"}, []string{"port"}},
		{"replicas without leader election", []string{"controller.replicas=2", "controller.leaderElection.enabled=false"},
			[]string{"controller.replicas > 1 needs controller.leaderElection.enabled"}},
		{"not a digest", []string{"image.digest=latest"}, []string{"digest"}},
		{"lease that is no duration", []string{"controller.leaderElection.renewDeadline=soon"}, []string{"renewDeadline"}},
		{"StorageClass without a LayerSet", []string{"storageClass.create=true"}, []string{"layerSet"}},
		{"size hint that is no quantity", []string{"storageClass.create=true", "storageClass.layerSet=demo", "storageClass.upperSizeHint=big"}, []string{"upperSizeHint"}},
		{"unknown quota mode", []string{"node.quota=xfs"}, []string{"/node/quota", "'auto', 'project', 'fallback', 'off'"}},
		{"project ids that are no range", []string{"node.projectIDs=2000000000"}, []string{"/node/projectIDs"}},
		{"project ids with a zero", []string{"node.projectIDs=0-100"}, []string{"/node/projectIDs"}},
		{"project ids reversed", []string{"node.projectIDs=2000-1000"},
			[]string{`node.projectIDs "2000-1000": want FIRST-LAST, project quota ids with 0 < FIRST <= LAST < 2^32`}},
		{"project ids above 32 bits", []string{"node.projectIDs=1-4294967296"}, []string{`node.projectIDs "1-4294967296"`, "< 2^32"}},
		{"unknown resizer", []string{"controller.resizer=sidecar"}, []string{"/controller/resizer", "'builtin', 'external'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", release, chartDir(t), "--namespace", namespace, "--kube-version", kubeVersion}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			r := run(t.Context(), env, helm, args...)
			if r.err == nil {
				t.Fatalf("helm template accepted %v", tt.set)
			}
			for _, s := range tt.errHas {
				if !strings.Contains(r.stderr, s) {
					t.Errorf("helm's error does not mention %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

// TestChartCIValuesAreTested keeps every file in charts/layerset-csi/ci in
// the matrix above: chart-testing lints them all, so must we.
func TestChartCIValuesAreTested(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var used []string
	for _, c := range chartCases() {
		used = append(used, c.files...)
	}
	for _, f := range files {
		rel := "ci/" + filepath.Base(f)
		if !slices.Contains(used, rel) {
			t.Errorf("%s is in no chart case", rel)
		}
	}
}
