package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// TestCommitCommand: a volume mounted from a LayerSet, written to, then
// committed to an OCI layout and to a registry; the layout unpacks with
// umoci, the pushed image mounts through a fresh store, and both show the
// volume's writes but not its init file.
func TestCommitCommand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts overlayfs")
	}
	reg := testimage.NewRegistry(t)
	base := reg.Push(t, "base:v1", image(t, "base-1", "base-2"))
	root, dir := t.TempDir(), t.TempDir()
	target := filepath.Join(t.TempDir(), "mnt")
	t.Cleanup(func() { _ = overlay.Unmount(context.Background(), target) })
	insecure := "--insecure-registry=" + reg.Host
	writeFile(t, filepath.Join(dir, "app.yaml"), `apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: app}
spec:
  layers: [{image: "`+base+`"}]
  init: {files: [{path: id, template: "{{.VolumeID}}"}]}
`)
	mustRun(t, "mount", "--root", root, insecure, "--layerset", filepath.Join(dir, "app.yaml"), "--volume-id", "v1", target)
	writeFile(t, filepath.Join(target, "written"), "by the pod")
	if err := os.Remove(filepath.Join(target, "base-2")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(target, "home/user"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(target, "home/user"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(target, "written"), "user.note", []byte("kept"), 0); err != nil {
		t.Fatal(err)
	}

	layoutDir := filepath.Join(t.TempDir(), "images")
	out := mustRun(t, "commit", "--root", root, insecure, "--volume-id", "v1", "--compression", "gzip",
		"--fixed-mtime", "-m", "the pod's work", "oci:"+layoutDir+":v1")
	if !strings.Contains(out, "committed volume v1 as layer sha256:") || !strings.Contains(out, "on 2 layers") ||
		!strings.Contains(out, "oci:"+layoutDir+"@sha256:") {
		t.Errorf("commit said %q", out)
	}
	// The same writes with the same fixed time make the same image.
	if again := mustRun(t, "commit", "--root", root, insecure, "--volume-id", "v1", "--compression", "gzip",
		"--fixed-mtime", "-m", "the pod's work", "oci:"+layoutDir+":v1"); again != out {
		t.Errorf("a second commit with --fixed-mtime said\n%s\nthe first\n%s", again, out)
	}
	img, err := source.Resolve(context.Background(), "oci:"+layoutDir+":v1", source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 3 {
		t.Fatalf("image has %d layers, want the 2 of the chain and the commit", len(img.Layers))
	}
	want := map[string]string{"base-1": "content of base-1", "written": "by the pod"}
	if _, err := exec.LookPath("umoci"); err == nil {
		bundle := filepath.Join(t.TempDir(), "bundle")
		if out, err := exec.Command("umoci", "unpack", "--image", layoutDir+":v1", bundle).CombinedOutput(); err != nil {
			t.Fatalf("umoci unpack: %v\n%s", err, out)
		}
		checkCommitted(t, filepath.Join(bundle, "rootfs"), want)
	} else {
		t.Log("umoci is not installed (bash hack/test-packages.sh installs it)")
	}

	// To a registry, zstd, read back as any image is: every blob checked.
	out = mustRun(t, "commit", "--root", root, insecure, "--volume-id", "v1", reg.Host+"/committed:v1")
	if !strings.Contains(out, "(zstd, ") || !strings.Contains(out, reg.Host+"/committed@sha256:") {
		t.Errorf("commit said %q", out)
	}
	fresh, err := layers.Open(context.Background(), layers.Options{Root: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := fresh.Pull(context.Background(), reg.Host+"/committed:v1", source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	if got := pulled.Layers[2].MediaType; got != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("committed layer pushed as %s", got)
	}
	var chain []v1.Hash
	for _, l := range pulled.Layers {
		chain = append(chain, l.DiffID)
	}
	check := filepath.Join(t.TempDir(), "check")
	vol, err := fresh.Mount(context.Background(), layers.VolumeSpec{ID: "check", Layers: chain, Target: check})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = overlay.Unmount(context.Background(), vol.Target) })
	checkCommitted(t, check, want)
}

// checkCommitted: root holds want, the pod's deletion, private directory
// and xattr, and no init file.
func checkCommitted(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for name, body := range want {
		if b, err := os.ReadFile(filepath.Join(root, name)); err != nil || string(b) != body {
			t.Errorf("%s: %q %v, want %q", name, b, err, body)
		}
	}
	for _, gone := range []string{"base-2", "id"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); !os.IsNotExist(err) {
			t.Errorf("%s: want it absent (deleted by the pod, or an init file), got %v", gone, err)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(root, "home/user"), &st); err != nil || st.Uid != 1000 || st.Mode&0o777 != 0o700 {
		t.Errorf("home/user: owner %d, mode %#o, %v", st.Uid, st.Mode&0o777, err)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(root, "written"), "user.note", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("xattr of written: %q %v", buf[:n], err)
	}
}

func TestCommitCommandErrors(t *testing.T) {
	root := t.TempDir()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"commit", "--root", root, "oci:/tmp/x:t"}, "--volume-id ID is required"},
		{[]string{"commit", "--root", root, "--volume-id", "v", "oci:/tmp/x"}, "name the tag"},
		{[]string{"commit", "--root", root, "--volume-id", "v", "busybox"}, "image reference"},
		{[]string{"commit", "--root", root, "--volume-id", "v", "--compression", "lz4", "oci:/tmp/x:t"}, "want zstd or gzip"},
		{[]string{"commit", "--root", root, "--volume-id", "v", "--fixed-mtime=yesterday", "oci:/tmp/x:t"}, "RFC 3339"},
		{[]string{"commit", "--root", root, "--volume-id", "nope", "oci:/tmp/x:t"}, "volume not found"},
	} {
		out, err := run(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: got %v (%s), want an error saying %q", tt.args, err, out, tt.want)
		}
	}
}
