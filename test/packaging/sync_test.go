package packaging

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestChartCRDsMatchSources checks the chart's copies of the CRDs against
// config/crd, byte for byte: `make generate` writes those, and `make
// deploy-manifests` copies them.
func TestChartCRDsMatchSources(t *testing.T) {
	src, err := filepath.Glob(filepath.Join(repoRoot(t), "config", "crd", "*.yaml"))
	if err != nil || len(src) == 0 {
		t.Fatalf("no CRDs in config/crd (%v)", err)
	}
	copies, err := filepath.Glob(filepath.Join(chartDir(t), "files", "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	base := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		return out
	}
	if !slices.Equal(base(src), base(copies)) {
		t.Fatalf("chart CRDs %v, config/crd %v: run make deploy-manifests", base(copies), base(src))
	}
	for _, s := range src {
		a, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(chartDir(t), "files", "crds", filepath.Base(s)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("charts/layerset-csi/files/crds/%s differs from config/crd: run make deploy-manifests", filepath.Base(s))
		}
	}
}

// TestDeployManifestsCurrent re-renders deploy/ from the chart and fails on
// any difference, with the diff.
func TestDeployManifestsCurrent(t *testing.T) {
	helm := filepath.Join(toolsDir(t, "helm"), "helm")
	env := append(helmEnv(t), "HELM="+helm)
	mustRun(t, env, "bash", filepath.Join(repoRoot(t), "hack", "render-deploy.sh"), "--check")
}

// TestDeployManifests checks what `kubectl apply -f deploy/` installs, with
// no helm needed: the chart's defaults, plus a Namespace that admits the
// privileged node plugin.
func TestDeployManifests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot(t), "deploy", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/ (%v)", err)
	}
	var all strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
		all.WriteString("\n---\n")
	}
	in := parseManifests(t, all.String())
	checkInstallation(t, in, defaults(t))
	ns := in.namespaces[namespace]
	if ns == nil {
		t.Fatalf("deploy/ creates no Namespace %s", namespace)
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace %s enforces Pod Security %q, want privileged: the node plugin is privileged", namespace, got)
	}
}

// valueKeys lists the dotted paths of values.yaml down to the leaves the
// schema describes: a key whose schema has properties is descended into,
// any other (a string, a list, a free-form map such as resources) is a leaf.
// It fails on keys the schema does not declare.
func valueKeys(t *testing.T) []string {
	t.Helper()
	var values map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir(t), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	b, err = os.ReadFile(filepath.Join(chartDir(t), "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatalf("values.schema.json: %v", err)
	}
	resolve := func(s map[string]any) map[string]any {
		if ref, ok := s["$ref"].(string); ok {
			name := strings.TrimPrefix(ref, "#/definitions/")
			def, ok := schema["definitions"].(map[string]any)[name].(map[string]any)
			if !ok {
				t.Fatalf("schema $ref %s resolves to nothing", ref)
			}
			return def
		}
		return s
	}
	var keys []string
	var walk func(prefix string, v map[string]any, s map[string]any)
	walk = func(prefix string, v map[string]any, s map[string]any) {
		props, _ := resolve(s)["properties"].(map[string]any)
		for k, val := range v {
			path := strings.TrimPrefix(prefix+"."+k, ".")
			ks, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("values.yaml has %s, which values.schema.json does not declare", path)
				continue
			}
			sub, isMap := val.(map[string]any)
			if _, hasProps := resolve(ks)["properties"]; isMap && hasProps {
				walk(path, sub, ks)
				continue
			}
			keys = append(keys, path)
		}
	}
	walk("", values, schema)
	sort.Strings(keys)
	return keys
}

// TestChartReadmeListsEveryValue keeps the README's table of values
// complete and free of values that no longer exist.
func TestChartReadmeListsEveryValue(t *testing.T) {
	keys := valueKeys(t)
	b, err := os.ReadFile(filepath.Join(chartDir(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Values\n")
	if !ok {
		t.Fatal("README.md has no ## Values section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	rows := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9_.]+)` \\|").FindAllStringSubmatch(table, -1)
	var documented []string
	for _, r := range rows {
		documented = append(documented, r[1])
	}
	for _, k := range keys {
		if !slices.Contains(documented, k) {
			t.Errorf("README.md has no row for value %s", k)
		}
	}
	for _, d := range documented {
		if !slices.Contains(keys, d) {
			t.Errorf("README.md documents %s, which values.yaml does not have", d)
		}
	}
	if len(keys) < 40 {
		t.Errorf("found only %d values in values.yaml: the walk is broken", len(keys))
	}
}
