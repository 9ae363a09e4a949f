// Package envtest starts a real kube-apiserver and etcd for tests, with the
// CRDs of config/crd installed.
//
// The binaries come from KUBEBUILDER_ASSETS or, when that is unset, from
// the directory `bash hack/tools.sh --print-dir` prints; `bash hack/tools.sh
// envtest` builds them. Without them a test is skipped, unless CI is set:
// in CI a missing binary is a failure, not a silently green run.
package envtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/layerset/layerset-csi/internal/kubescheme"
)

// binaries are what envtest runs.
var binaries = []string{"etcd", "kube-apiserver"}

// Start starts an API server for t, stopped when t ends, and returns its
// config and a client whose scheme has the core and LayerSet types.
func Start(t testing.TB) (*rest.Config, client.Client) {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, ".cache", "bin")
	}
	if missing := missingBinaries(assets); len(missing) > 0 {
		msg := fmt.Sprintf("envtest binaries %v are not in %s: run `bash hack/tools.sh envtest`, or set KUBEBUILDER_ASSETS", missing, assets)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	scheme, err := kubescheme.New()
	if err != nil {
		t.Fatal(err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd")},
		ErrorIfCRDPathMissing: true,
		Scheme:                scheme,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping kube-apiserver and etcd: %v", err)
		}
	})
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c
}

func missingBinaries(dir string) []string {
	var missing []string
	for _, b := range binaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, b)
		}
	}
	return missing
}

// repoRoot is the directory holding go.mod, above the test's working
// directory (its package's directory).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
