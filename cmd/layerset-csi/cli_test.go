package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

// TestMain lets a test run this binary's main: re-executing the test binary
// with LAYERSET_CSI_MAIN=1 behaves as layerset-csi itself.
func TestMain(m *testing.M) {
	if os.Getenv("LAYERSET_CSI_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, args...)
	if err != nil {
		t.Fatalf("layerset-csi %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func image(t *testing.T, files ...string) v1.Image {
	t.Helper()
	var layers []v1.Layer
	for _, f := range files {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(f, "content of "+f)}, testimage.Gzip)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := testimage.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestStandaloneWorkflow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts overlayfs")
	}
	reg := testimage.NewRegistry(t)
	base := reg.Push(t, "base:v1", image(t, "base-1", "base-2"))
	app := reg.Push(t, "app:v1", image(t, "app"))
	root, dir := t.TempDir(), t.TempDir()
	target := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() { _ = overlay.Unmount(context.Background(), target) })
	insecure := "--insecure-registry=" + reg.Host

	writeFile(t, filepath.Join(dir, "base.yaml"), `apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: base}
spec: {layers: [{image: "`+base+`"}]}
`)
	writeFile(t, filepath.Join(dir, "app.yaml"), `apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: app}
spec:
  layers: [{layerSet: base}, {image: "`+app+`"}]
  init: {files: [{path: id, template: "{{.VolumeID}}"}]}
`)
	if out := mustRun(t, "layers", "pull", "--root", root, insecure, base); !strings.Contains(out, "2 layers") {
		t.Errorf("pull said %q", out)
	}
	mustRun(t, "mount", "--root", root, insecure, "--layerset", filepath.Join(dir, "app.yaml"), "--volume-id", "v1", target)
	for _, f := range []string{"base-1", "base-2", "app"} {
		if b, err := os.ReadFile(filepath.Join(target, f)); err != nil || string(b) != "content of "+f {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(target, "id")); string(b) != "v1" {
		t.Errorf("init template rendered %q", b)
	}

	var layers []struct {
		DiffID string
		LinkID string
		Users  int
	}
	if err := json.Unmarshal([]byte(mustRun(t, "layers", "ls", "--root", root, "-o", "json")), &layers); err != nil {
		t.Fatal(err)
	}
	if len(layers) != 3 {
		t.Fatalf("want 3 layers listed, got %d", len(layers))
	}
	for _, l := range layers {
		if l.Users != 1 || len(l.LinkID) != 26 {
			t.Errorf("layer %+v: want 1 user and a 26-char short id", l)
		}
	}
	if out := mustRun(t, "layers", "gc", "--root", root, "--max-bytes", "0"); !strings.Contains(out, "removed 0 layers") {
		t.Errorf("gc removed layers in use: %s", out)
	}
	mustRun(t, "unmount", "--root", root, target)
	if m, _ := overlay.IsMounted(target); m {
		t.Fatal("still mounted after unmount")
	}
	if out := mustRun(t, "layers", "gc", "--root", root, "--max-bytes", "0"); !strings.Contains(out, "removed 3 layers") {
		t.Errorf("gc after unmount: %s", out)
	}
}

func TestErrorsExitNonZeroWithAMessage(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"mount", "--root", root, "--layerset", "/nonexistent.yaml", "/tmp/x"}, "no such file"},
		{[]string{"mount", "--root", root, "/tmp/x"}, "--layerset FILE is required"},
		{[]string{"layers", "pull", "--root", root, "busybox"}, "busybox"},
		{[]string{"layers", "gc", "--root", root, "--max-bytes", "lots"}, "--max-bytes"},
		{[]string{"layers", "ls", "--root", root, "-o", "yaml"}, "unknown output format"},
		{[]string{"unmount", "--root", root, "/not/mounted"}, "no volume"},
		{[]string{"layers", "pull", "--root", root, "--fetch-chunk-size", "1Ki", "oci:/x:y"}, "RangeChunkSize 1024: want 1 MiB to 256 MiB"},
		{[]string{"layers", "pull", "--root", root, "--fetch-connections", "17", "oci:/x:y"}, "RangeConnections 17: want 1 to 16"},
		{[]string{"layers", "pull", "--root", root, "--fetch-range-threshold", "-5", "oci:/x:y"}, "want a positive quantity such as 8Mi"},
	}
	for _, tt := range tests {
		cmd := exec.Command(os.Args[0], tt.args...)
		cmd.Env = append(os.Environ(), "LAYERSET_CSI_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() == 0 {
			t.Errorf("%v: want a non-zero exit, got %v", tt.args, err)
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: stderr %q does not mention %q", tt.args, stderr.String(), tt.want)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
