package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/controller"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"unix:///csi/csi.sock", "/csi/csi.sock", true},
		{"/csi/csi.sock", "/csi/csi.sock", true},
		{"unix://csi/csi.sock", "", false}, // a host, not a path
		{"tcp://127.0.0.1:10000", "", false},
		{"unix://", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if tt.ok != (err == nil) || (tt.ok && got != tt.want) {
			t.Errorf("ParseEndpoint(%q) = %q, %v; want %q ok=%t", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"unix:///a/b.sock", "/a", "unix://h/p", "x://", "%zz://a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseEndpoint(s)
		if err == nil && !filepath.IsAbs(p) {
			t.Fatalf("ParseEndpoint(%q) = %q, not absolute", s, p)
		}
	})
}

func TestListenStaleSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "lcsi")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	}()
	sock := filepath.Join(dir, "sub", "csi.sock")

	lis, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://" + sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("listening on a socket someone serves: %v, want an error saying it is in use", err)
	}
	// A socket its process left behind (as after kill -9): unlink off.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	lis, err = Listen(sock)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listening on a regular file: %v", err)
	}
}

func TestServeIdentityAndMetrics(t *testing.T) {
	dir, err := os.MkdirTemp("", "lcsi")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	}()
	sock := filepath.Join(dir, "csi.sock")
	lis, err := Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := controller.New(context.Background(), controller.Config{StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, lis, Options{DriverName: "test.layerset.io", Version: "v9", Metrics: reg}, cs)
	}()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	}()
	id := csi.NewIdentityClient(conn)
	info, err := id.GetPluginInfo(context.Background(), &csi.GetPluginInfoRequest{}, grpc.WaitForReady(true))
	if err != nil || info.Name != "test.layerset.io" || info.VendorVersion != "v9" {
		t.Fatalf("GetPluginInfo = %v, %v", info, err)
	}
	caps, err := id.GetPluginCapabilities(context.Background(), &csi.GetPluginCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var controller bool
	for _, c := range caps.Capabilities {
		controller = controller || c.GetService().GetType() == csi.PluginCapability_Service_CONTROLLER_SERVICE
	}
	if !controller {
		t.Error("CONTROLLER_SERVICE not reported with a controller given")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after a graceful stop: %v", err)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var calls uint64
	for _, f := range families {
		if f.GetName() != "layerset_csi_call_duration_seconds" {
			continue
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "method" && l.GetValue() == "GetPluginInfo" {
					calls += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if calls != 1 {
		t.Errorf("metrics recorded %d GetPluginInfo calls, want 1", calls)
	}

	if err := Serve(context.Background(), lis, Options{}, "not a service"); err == nil {
		t.Error("Serve accepted a value that is no CSI service")
	}
}
