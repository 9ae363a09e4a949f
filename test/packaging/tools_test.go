package packaging

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot tell where the test's source is")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func chartDir(t *testing.T) string { return filepath.Join(repoRoot(t), "charts", "layerset-csi") }

// toolsDir asks hack/tools.sh where it keeps helm, kube-apiserver, etcd and
// kubectl, and returns it once the named binaries are there. When they are
// not, the test is skipped on a developer machine but fails in CI (CI set):
// CI must never pass by testing nothing.
func toolsDir(t *testing.T, names ...string) string {
	t.Helper()
	out, err := exec.Command("bash", filepath.Join(repoRoot(t), "hack", "tools.sh"), "--print-dir").Output()
	if err != nil {
		t.Fatalf("hack/tools.sh --print-dir: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	var missing []string
	for _, n := range names {
		if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		msg := "missing " + strings.Join(missing, ", ") + " in " + dir + ": build them with `bash hack/tools.sh helm envtest` (make tools)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

// helmEnv keeps helm's caches and configuration in the test's temp dir,
// away from the user's.
func helmEnv(t *testing.T) []string {
	t.Helper()
	home := t.TempDir()
	return append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
}

// result is what a command printed and whether it succeeded.
type result struct {
	stdout, stderr string
	err            error
}

// run runs a tool and returns its output; it does not judge the outcome.
func run(ctx context.Context, env []string, name string, args ...string) result {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	return result{stdout.String(), stderr.String(), err}
}

// mustRun runs a tool and fails the test, showing its output, if it fails.
func mustRun(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	r := run(t.Context(), env, name, args...)
	if r.err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), r.err, r.stdout, r.stderr)
	}
	return r.stdout
}
