package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/wait"
)

// probeSource is the stand-in for layerset-csi the containerd test runs: it
// exits non-zero unless it finds the CA bundle where the image puts it.
// Given arguments, it runs them instead, found through the image's PATH as
// the node plugin finds mkfs.ext4, and prints what they print.
const probeSource = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
)

func main() {
	if len(os.Args) > 1 {
		out, err := exec.Command(os.Args[1], os.Args[2:]...).CombinedOutput()
		fmt.Printf("%s", out)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		return
	}
	b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("%s/%s uid=%d certs=%d\n", runtime.GOOS, runtime.GOARCH, os.Getuid(), len(b))
}
`

// TestArchiveRunsInContainerd does what an air-gapped node does with the
// archive, `ctr images import`, in a private containerd, then runs the
// image: its entrypoint must start (static, no libc) and find its files,
// and the shipped mkfs.ext4 must start from its own libraries and loader.
func TestArchiveRunsInContainerd(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install containerd runc)", tool)
		}
	}
	bin := probeBinary(t)
	out := t.TempDir()
	opts := testOptions(t, out, Binary{OS: "linux", Arch: runtime.GOARCH, Path: bin})
	opts.Tools = hostTools(t)
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	certs, err := os.ReadFile(opts.CACertificates)
	if err != nil {
		t.Fatal(err)
	}

	ctr := startContainerd(t)
	ref := "ghcr.io/layerset/layerset-csi:v1.2.3"
	ctr.run(t, "images", "import", "--snapshotter", "native", filepath.Join(out, "layerset-csi-linux-"+runtime.GOARCH+".tar"))
	if got := ctr.run(t, "images", "ls", "-q"); !strings.Contains(got, ref) {
		t.Fatalf("after import, containerd has images %q, want %s", got, ref)
	}
	got := ctr.run(t, "run", "--rm", "--snapshotter", "native", ref, "probe")
	want := fmt.Sprintf("linux/%s uid=0 certs=%d\n", runtime.GOARCH, len(certs))
	if got != want {
		t.Errorf("the image's entrypoint printed %q, want %q", got, want)
	}
	// ctr's arguments replace the entrypoint: the probe runs mkfs.ext4 by
	// name. mke2fs -V prints its version and that of the library it loaded.
	got = ctr.run(t, "run", "--rm", "--snapshotter", "native", ref, "mkfs", Entrypoint, "mkfs.ext4", "-V")
	if !strings.HasPrefix(got, "mke2fs ") || !strings.Contains(got, "Using EXT2FS Library version") {
		t.Errorf("mkfs.ext4 -V in the image printed %q, want mke2fs's version and its library's", got)
	}
}

// probeBinary builds probeSource, statically, for this machine.
func probeBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(probeSource), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "probe")
	cmd := exec.Command("go", "build", "-o", out, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

type containerd struct {
	socket string
}

// startContainerd runs a containerd of the test's own, with its own root,
// state and socket and without the CRI plugin, and stops it (by its PID)
// when the test ends.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	dir := t.TempDir()
	c := &containerd{socket: filepath.Join(dir, "containerd.sock")}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.socket, c.socket+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if err := cmd.Process.Signal(syscall.SIGTERM); err == nil {
			if err := <-exited; err != nil {
				t.Logf("containerd exited: %v", err)
			}
		}
		unmountBelow(t, dir)
		if t.Failed() {
			t.Logf("containerd log:\n%s", logs.String())
		}
	})
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("containerd exited: %v", err)
		default:
		}
		return exec.CommandContext(ctx, "ctr", "-a", c.socket, "version").Run() == nil, nil
	})
	if err != nil {
		t.Fatalf("containerd did not come up: %v\n%s", err, logs.String())
	}
	return c
}

// run runs ctr against this containerd in namespace "layerset-test".
func (c *containerd) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "ctr", append([]string{"-a", c.socket, "-n", "layerset-test"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ctr %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// unmountBelow detaches whatever containerd left mounted under dir, so the
// temp dir can be removed.
func unmountBelow(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Error(err)
		return
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			if err := unix.Unmount(f[4], unix.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", f[4], err)
			}
		}
	}
}
