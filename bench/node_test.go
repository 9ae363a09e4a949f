// Package bench measures the node plugin as kubelet meets it: the real
// layerset-csi binary in its own process, called over its unix socket.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/layerset/layerset-csi/internal/rawmount"
	"github.com/layerset/layerset-csi/internal/testimage"
)

// plugin is a running `layerset-csi node` and a client of it.
type plugin struct {
	cmd    *exec.Cmd
	root   string
	client csi.NodeClient
	dir    string // targets live here
}

func startPlugin(b *testing.B, layers int) *plugin {
	if os.Geteuid() != 0 {
		b.Skip("needs root: the plugin mounts overlayfs")
	}
	work := b.TempDir()
	bin := filepath.Join(work, "layerset-csi")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/layerset-csi").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	reg := testimage.NewRegistry(b)
	ref := reg.Push(b, "bench/tree:v1", image(b, layers))
	lsDir := filepath.Join(work, "layersets")
	must(b, os.Mkdir(lsDir, 0o755))
	must(b, os.WriteFile(filepath.Join(lsDir, "bench.yaml"), []byte(fmt.Sprintf(`apiVersion: layerset.io/v1alpha1
kind: LayerSet
metadata: {name: bench}
spec:
  layers: [{image: %q}]
  init: {files: [{path: etc/pod, template: "{{.PodName}}"}]}
`, ref)), 0o644))
	sockDir, err := os.MkdirTemp("", "lsb")
	must(b, err)
	b.Cleanup(func() {
		if err := os.RemoveAll(sockDir); err != nil {
			b.Error(err)
		}
	})
	sock := filepath.Join(sockDir, "csi.sock")
	p := &plugin{root: filepath.Join(work, "root"), dir: filepath.Join(work, "targets")}
	must(b, os.Mkdir(p.dir, 0o755))
	p.cmd = exec.Command(bin, "node", "--endpoint", "unix://"+sock, "--node-id", "bench", "--root", p.root,
		"--layersets", lsDir, "--insecure-registry", reg.Host)
	var log bytes.Buffer
	p.cmd.Stdout, p.cmd.Stderr = &log, &log
	must(b, p.cmd.Start())
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
		if b.Failed() {
			b.Logf("plugin log:\n%s", log.String())
		}
	})
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(b, err)
	b.Cleanup(func() {
		if err := conn.Close(); err != nil {
			b.Error(err)
		}
	})
	p.client = csi.NewNodeClient(conn)
	return p
}

func image(b *testing.B, n int) v1.Image {
	layers := make([]v1.Layer, n)
	for i := range layers {
		l, err := testimage.Layer([]testimage.Entry{testimage.File(fmt.Sprintf("layer-%03d", i), "x")}, testimage.Gzip)
		must(b, err)
		layers[i] = l
	}
	img, err := testimage.Image(layers...)
	must(b, err)
	return img
}

func (p *plugin) publish(ctx context.Context, id string) (string, error) {
	target := filepath.Join(p.dir, id)
	_, err := p.client.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{
		VolumeId:   id,
		TargetPath: target,
		VolumeCapability: &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		},
		VolumeContext: map[string]string{
			"layerSet":                         "bench",
			"csi.storage.k8s.io/ephemeral":     "true",
			"csi.storage.k8s.io/pod.name":      "pod-" + id,
			"csi.storage.k8s.io/pod.uid":       id,
			"csi.storage.k8s.io/pod.namespace": "bench",
		},
	}, grpc.WaitForReady(true))
	return target, err
}

func (p *plugin) unpublish(ctx context.Context, id, target string) error {
	_, err := p.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

// BenchmarkNodePublish measures a warm NodePublishVolume of an ephemeral
// volume (layers cached, a new init layer and upper) over the socket,
// beside a raw fsconfig overlay mount of the same chain, alternating; it
// reports both medians and their ratio. p50-us-rpc is an empty call
// (NodeGetCapabilities) over the same socket: what any RPC costs before
// the plugin does anything. x-floor-p50 is publish over the sum of the
// two, the floor of any CSI plugin (issue 13 asks for at most 1.3).
func BenchmarkNodePublish(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("layers=%d", n), func(b *testing.B) {
			p := startPlugin(b, n)
			ctx := context.Background()
			// Warm the cache, and learn the chain the plugin mounts.
			target, err := p.publish(ctx, "warm")
			must(b, err)
			lowers := chainOf(b, p.root, "vol-warm")
			must(b, p.unpublish(ctx, "warm", target))
			storeDir := filepath.Join(p.root, "overlay2")
			raw := filepath.Join(storeDir, "raw")
			for _, d := range []string{"diff", "work", "init", "mnt"} {
				must(b, os.MkdirAll(filepath.Join(raw, d), 0o755))
			}
			rawLowers := append([]string{"raw/init"}, lowers...)

			ours, base, rpc := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("v%d", i)
				start := time.Now()
				target, err := p.publish(ctx, id)
				ours = append(ours, time.Since(start))
				must(b, err)
				b.StopTimer()
				must(b, p.unpublish(ctx, id, target))
				b.StartTimer()
				start = time.Now()
				must(b, rawmount.FSConfig(storeDir, rawLowers, "raw/diff", "raw/work", filepath.Join(raw, "mnt")))
				base = append(base, time.Since(start))
				b.StopTimer()
				start = time.Now()
				if _, err := p.client.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{}); err != nil {
					b.Fatal(err)
				}
				rpc = append(rpc, time.Since(start))
				must(b, unix.Unmount(filepath.Join(raw, "mnt"), 0))
				b.StartTimer()
			}
			b.ReportMetric(float64(median(ours).Microseconds()), "p50-us-publish")
			b.ReportMetric(float64(median(base).Microseconds()), "p50-us-raw")
			b.ReportMetric(float64(median(rpc).Microseconds()), "p50-us-rpc")
			b.ReportMetric(float64(median(ours))/float64(median(base)), "x-raw-p50")
			// The floor of any CSI plugin: an empty call plus the mount
			// itself. What publish costs above it is the plugin's own work.
			b.ReportMetric(float64(median(ours))/float64(median(rpc)+median(base)), "x-floor-p50")
		})
	}
}

// BenchmarkThousandVolumes publishes 1000 ephemeral volumes of one
// LayerSet, then reports the time, the layers stored and the plugin's RSS.
func BenchmarkThousandVolumes(b *testing.B) {
	const volumes = 1000
	for i := 0; i < b.N; i++ {
		p := startPlugin(b, 10)
		ctx := context.Background()
		targets := make([]string, volumes)
		start := time.Now()
		for v := range volumes {
			t, err := p.publish(ctx, fmt.Sprintf("v%04d", v))
			must(b, err)
			targets[v] = t
		}
		elapsed := time.Since(start)
		rss, hwm := memory(b, p.cmd.Process.Pid)
		stored := layerDirs(b, filepath.Join(p.root, "overlay2"))
		for v, t := range targets {
			must(b, p.unpublish(ctx, fmt.Sprintf("v%04d", v), t))
		}
		if stored != 10 {
			b.Fatalf("%d layer directories for a 10-layer LayerSet used by %d volumes, want 10", stored, volumes)
		}
		b.ReportMetric(elapsed.Seconds(), "s-1000-publishes")
		b.ReportMetric(float64(rss)/(1<<20), "MiB-rss")
		b.ReportMetric(float64(hwm)/(1<<20), "MiB-rss-peak")
		b.ReportMetric(float64(stored), "layers-stored")
	}
}

// chainOf reads a volume's lower file, minus its own init layer.
func chainOf(b *testing.B, root, vol string) []string {
	data, err := os.ReadFile(filepath.Join(root, "overlay2", vol, "lower"))
	must(b, err)
	return strings.Split(strings.TrimSpace(string(data)), ":")[1:]
}

func layerDirs(b *testing.B, dir string) int {
	entries, err := os.ReadDir(dir)
	must(b, err)
	n := 0
	for _, e := range entries {
		if len(e.Name()) == 64 {
			n++
		}
	}
	return n
}

// memory returns VmRSS and VmHWM of a process, in bytes.
func memory(b *testing.B, pid int) (rss, hwm int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(b, err)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			hwm = kb << 10
		}
	}
	return rss, hwm
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
