// Package sanity runs the CSI conformance suite, csi-sanity, against the
// real layerset-csi binary: its node and controller services as separate
// processes, serving a LayerSet whose image comes from a registry.
package sanity

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/testimage"
)

// toolsDir is where hack/tools.sh keeps csi-sanity.
func toolsDir(t *testing.T) string {
	out, err := exec.Command("bash", "../../hack/tools.sh", "--print-dir").Output()
	if err != nil {
		t.Fatalf("hack/tools.sh --print-dir: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// setup is what every csi-sanity run starts from: the csi-sanity binary,
// our binary built, and a folder with one LayerSet of an image in an
// in-process registry. It skips without root, and without csi-sanity
// outside CI.
type setup struct {
	sanityBin, bin, layersets, registry string
}

func newSetup(t *testing.T) setup {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the node service mounts overlayfs")
	}
	sanityBin := filepath.Join(toolsDir(t), "csi-sanity")
	if _, err := os.Stat(sanityBin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("csi-sanity missing in CI (run hack/tools.sh csi-sanity): %v", err)
		}
		t.Skipf("csi-sanity not built: run `bash hack/tools.sh csi-sanity` (%v)", err)
	}
	work := t.TempDir()
	bin := filepath.Join(work, "layerset-csi")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/layerset-csi").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	reg := testimage.NewRegistry(t)
	ref := reg.Push(t, "sanity/tree:v1", image(t))
	layersets := filepath.Join(work, "layersets")
	must(t, os.Mkdir(layersets, 0o755))
	must(t, os.WriteFile(filepath.Join(layersets, "sanity.yaml"), fmt.Appendf(nil, `apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: sanity}
spec:
  layers: [{image: %q}]
  init: {files: [{path: etc/volume, template: "{{.VolumeID}}"}]}
`, ref), 0o644))
	return setup{sanityBin: sanityBin, bin: bin, layersets: layersets, registry: reg.Host}
}

func TestCSISanity(t *testing.T) {
	su := newSetup(t)
	sanityBin, bin, layersets := su.sanityBin, su.bin, su.layersets

	common := []string{"--layersets", layersets, "--insecure-registry", su.registry, "-v=2"}
	t.Run("separate node and controller", func(t *testing.T) {
		dir := t.TempDir()
		nodeSock, ctrlSock := filepath.Join(dir, "node.sock"), filepath.Join(dir, "ctrl.sock")
		start(t, bin, append([]string{"node", "--endpoint", "unix://" + nodeSock, "--node-id", "sanity-node",
			"--root", filepath.Join(dir, "root")}, common...)...)
		start(t, bin, append([]string{"controller", "--endpoint", "unix://" + ctrlSock,
			"--state-dir", filepath.Join(dir, "controller")}, common...)...)
		runSanity(t, sanityBin, dir, nodeSock, ctrlSock)
	})
	// The node suite's full lifecycle specs run only when the node endpoint
	// also serves the controller: the monolith layout.
	t.Run("monolith", func(t *testing.T) {
		dir := t.TempDir()
		sock := filepath.Join(dir, "csi.sock")
		start(t, bin, append([]string{"node", "--controller", "--endpoint", "unix://" + sock, "--node-id", "sanity-node",
			"--root", filepath.Join(dir, "root")}, common...)...)
		runSanity(t, sanityBin, dir, sock, sock)
	})
}

// runSanity runs csi-sanity against the endpoints and checks that every
// spec that ran passed, that the services were all exercised, and that no
// mount is left under dir.
func runSanity(t *testing.T, sanityBin, dir, nodeSock, ctrlSock string) {
	t.Cleanup(func() { unmountUnder(t, dir) })
	waitSocket(t, nodeSock)
	waitSocket(t, ctrlSock)
	params := filepath.Join(dir, "params.yaml")
	must(t, os.WriteFile(params, []byte("layerSet: sanity\n"), 0o644))
	junit := filepath.Join(dir, "junit.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, sanityBin,
		"-csi.endpoint", nodeSock,
		"-csi.controllerendpoint", ctrlSock,
		"-csi.mountdir", filepath.Join(dir, "target"),
		"-csi.stagingdir", filepath.Join(dir, "staging"),
		"-csi.testvolumeparameters", params,
		// Volumes are created at this size, their limit, and expanded
		// to the next: ControllerExpandVolume records it and
		// NodeExpandVolume raises the published volume's limit.
		"-csi.testvolumesize", "1073741824",
		"-csi.testvolumeexpandsize", "2147483648",
		"-csi.junitfile", junit,
		"-ginkgo.timeout", "9m",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	summary := regexp.MustCompile(`Ran \d+ of \d+ Specs.*`).FindAllString(out.String(), -1)
	t.Logf("csi-sanity: %s", strings.Join(summary, "; "))
	if err != nil {
		t.Fatalf("csi-sanity failed: %v\n%s", err, tail(out.String(), 12000))
	}
	passed, skipped := junitCounts(t, junit)
	t.Logf("csi-sanity: %d specs passed, %d skipped:\n  %s", len(passed), len(skipped), strings.Join(skipped, "\n  "))
	// Guard against a suite that skipped what matters: every service ran.
	for _, want := range []string{"Node Service", "Controller Service", "Identity Service",
		"ExpandVolume [Controller Server] should work", "NodeExpandVolume should work if node-expand is called after node-publish"} {
		if !containsPrefix(passed, want) {
			t.Errorf("no %q spec passed; the suite did not run as expected", want)
		}
	}
	assertNoMountsUnder(t, dir)
}

func image(t *testing.T) v1.Image {
	l, err := testimage.Layer([]testimage.Entry{testimage.File("usr/share/tree", "from a layer\n")}, testimage.Gzip)
	must(t, err)
	img, err := testimage.Image(l)
	must(t, err)
	return img
}

// start runs the binary until the test ends, with its log kept for failures.
func start(t *testing.T, bin string, args ...string) {
	var log bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			err = <-done
		}
		if err != nil {
			t.Logf("%s exited: %v", args[0], err)
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", args[0], tail(log.String(), 8000))
		}
	})
}

func waitSocket(t *testing.T, path string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no socket at %s after 30s", path)
}

type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Status  string    `xml:"status,attr"`
			Skipped *struct{} `xml:"skipped"`
			Failure *struct{} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func junitCounts(t *testing.T, path string) (passed, skipped []string) {
	b, err := os.ReadFile(path)
	must(t, err)
	var s junitSuites
	must(t, xml.Unmarshal(b, &s))
	for _, suite := range s.Suites {
		for _, c := range suite.Cases {
			switch {
			case c.Failure != nil:
				t.Errorf("failed: %s", c.Name)
			case c.Skipped != nil || c.Status == "skipped":
				skipped = append(skipped, c.Name)
			default:
				passed = append(passed, c.Name)
			}
		}
	}
	return passed, skipped
}

func assertNoMountsUnder(t *testing.T, dir string) {
	for _, line := range mountsUnder(t, dir) {
		t.Errorf("leaked mount: %s", line)
	}
}

// mountsUnder returns the mountinfo lines of mounts below dir, the most
// recent first.
func mountsUnder(t *testing.T, dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	must(t, err)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if fields := strings.Fields(line); len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			out = append([]string{line}, out...)
		}
	}
	return out
}

// unmountUnder detaches whatever a failed run left mounted below dir, so
// that neither the host nor the removal of dir is left with it.
func unmountUnder(t *testing.T, dir string) {
	for _, line := range mountsUnder(t, dir) {
		if err := unix.Unmount(strings.Fields(line)[4], unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: %v", err)
		}
	}
}

func containsPrefix(names []string, sub string) bool {
	for _, n := range names {
		if strings.Contains(n, sub) {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
