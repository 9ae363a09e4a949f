package node

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// plugin is the real layerset-csi binary serving `layerset-csi node` on a
// unix socket, with a store root, a folder of LayerSets and a test
// registry: the process kubelet talks to, which tests kill with SIGKILL
// and start again on the same root.
type plugin struct {
	t         *testing.T
	bin       string
	root      string
	layerSets string
	reg       *registry
	sock      string
	logs      syncBuffer // every run's output, in order
	cmd       *exec.Cmd
}

// newPlugin builds the binary; it skips the test in -short mode and when
// there is no go tool. The plugin is not started.
func newPlugin(t *testing.T, reg *registry, root, layerSets string) *plugin {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the binary with")
	}
	bin := filepath.Join(t.TempDir(), "layerset-csi")
	build := exec.Command(goTool, "build", "-o", bin, "github.com/layerset/layerset-csi/cmd/layerset-csi")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sockDir, err := os.MkdirTemp("", "lcsi") // short: unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, os.RemoveAll(sockDir)) })
	return &plugin{t: t, bin: bin, root: root, layerSets: layerSets, reg: reg, sock: filepath.Join(sockDir, "csi.sock")}
}

// start runs the plugin; it is killed at the end of the test if it still
// runs then.
func (p *plugin) start() {
	t := p.t
	t.Helper()
	cmd := exec.Command(p.bin, "node", "--endpoint", "unix://"+p.sock, "--node-id", testNode, "--root", p.root,
		"--layersets", p.layerSets, "--insecure-registry", p.reg.Host, "-v=2")
	cmd.Stdout, cmd.Stderr = &p.logs, &p.logs
	if testing.Verbose() {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&p.logs, os.Stderr), io.MultiWriter(&p.logs, os.Stderr)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			check(t, cmd.Process.Kill())
			_ = cmd.Wait() // "signal: killed"
		}
	})
	p.cmd = cmd
}

// kill kills the running plugin with SIGKILL and waits for it to exit.
func (p *plugin) kill() {
	t := p.t
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait() // "signal: killed"
}

// client connects to the running plugin and returns once it serves. The
// connection is closed at the end of the test.
func (p *plugin) client() csi.NodeClient {
	t := p.t
	t.Helper()
	// A short reconnect backoff: the plugin's socket appears a moment
	// after the process starts, and the default backoff would wait a
	// second for each try after the first.
	bo := backoff.DefaultConfig
	bo.BaseDelay, bo.MaxDelay = 20*time.Millisecond, 100*time.Millisecond
	conn, err := grpc.NewClient("unix://"+p.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { check(t, conn.Close()) })
	id := csi.NewIdentityClient(conn)
	// Wait until the plugin serves: its start-up (recovery, store repair)
	// takes what it takes, bounded only by the test's patience.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if _, err := id.Probe(ctx, &csi.ProbeRequest{}, grpcWaitForReady()); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("plugin does not answer: %v\n%s", err, p.logs.String())
		}
	}
	return csi.NewNodeClient(conn)
}
