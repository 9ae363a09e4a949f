package registration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

const driverName = "csi.layerset.io"

// shortDir is a temporary directory with a short path: unix socket paths
// are limited to 107 bytes and t.TempDir embeds the test name.
func shortDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "reg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	return dir
}

// start runs Serve until stop is called; stop returns Serve's error. Calls
// made with callCtx fail instead of waiting forever if Serve gives up early.
func start(t *testing.T, dir, endpoint string, versions []string) (callCtx context.Context, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	callCtx, exited := context.WithCancelCause(t.Context())
	done := make(chan error, 1)
	go func() {
		err := Serve(ctx, dir, driverName, endpoint, versions)
		exited(fmt.Errorf("Serve returned early: %v", err))
		done <- err
	}()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err, stopped = <-done, true
		}
		return err
	}
	t.Cleanup(func() {
		if stopped {
			return // the test had the error
		}
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return callCtx, stop
}

// client dials the registration socket the way the kubelet does; it waits
// for the socket to appear, since Serve creates it in the background.
func client(t *testing.T, sock string) registerapi.RegistrationClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Error(err)
		}
	})
	return registerapi.NewRegistrationClient(conn)
}

func TestGetInfo(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		versions []string
		want     *registerapi.PluginInfo
	}{
		{"path", "/var/lib/kubelet/plugins/csi.layerset.io/csi.sock", []string{"1.0.0"},
			&registerapi.PluginInfo{Endpoint: "/var/lib/kubelet/plugins/csi.layerset.io/csi.sock", SupportedVersions: []string{"1.0.0"}}},
		{"unix URL is reduced to the path the kubelet dials", "unix:///var/lib/kubelet/plugins/x/../csi.layerset.io/csi.sock", nil,
			&registerapi.PluginInfo{Endpoint: "/var/lib/kubelet/plugins/csi.layerset.io/csi.sock", SupportedVersions: []string{DefaultVersion}}},
		{"several versions", "/run/csi.sock", []string{"1.0.0", "1.13.0"},
			&registerapi.PluginInfo{Endpoint: "/run/csi.sock", SupportedVersions: []string{"1.0.0", "1.13.0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := shortDir(t)
			ctx, _ := start(t, dir, tt.endpoint, tt.versions)
			got, err := client(t, filepath.Join(dir, driverName+"-reg.sock")).GetInfo(ctx, &registerapi.InfoRequest{})
			if err != nil {
				t.Fatal(err, context.Cause(ctx))
			}
			if got.Type != registerapi.CSIPlugin || got.Name != driverName || got.Endpoint != tt.want.Endpoint ||
				!slices.Equal(got.SupportedVersions, tt.want.SupportedVersions) {
				t.Errorf("GetInfo = {%s %s %s %v}, want {%s %s %s %v}", got.Type, got.Name, got.Endpoint, got.SupportedVersions,
					registerapi.CSIPlugin, driverName, tt.want.Endpoint, tt.want.SupportedVersions)
			}
		})
	}
}

func TestNotifyAndRemoveOnExit(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, driverName+"-reg.sock")
	ctx, stop := start(t, dir, "/run/csi.sock", nil)
	c := client(t, sock)
	for _, st := range []*registerapi.RegistrationStatus{
		{PluginRegistered: true},
		{PluginRegistered: false, Error: "plugin name already registered"},
	} {
		if _, err := c.NotifyRegistrationStatus(ctx, st); err != nil {
			t.Errorf("NotifyRegistrationStatus(%v): %v %v", st, err, context.Cause(ctx))
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("Serve returned %v when its context ended, want nil", err)
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket %s still there after Serve returned (Lstat: %v)", sock, err)
	}
}

// A socket left by a crashed run is replaced; on exit, a socket that a
// successor already put in its place is left alone.
func TestSocketOwnership(t *testing.T) {
	dir := shortDir(t)
	sock := filepath.Join(dir, driverName+"-reg.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := stale.Close(); err != nil {
		t.Fatal(err)
	}

	ctx, stop := start(t, dir, "/run/csi.sock", nil)
	if _, err := client(t, sock).GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		t.Fatalf("GetInfo over a replaced stale socket: %v %v", err, context.Cause(ctx))
	}

	// A successor removes our socket and listens on the same path.
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	successor, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := successor.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("the successor's socket was removed: Lstat = %v, %v", fi, err)
	}
}

func TestServeRejects(t *testing.T) {
	dir := shortDir(t)
	notSocket := filepath.Join(dir, "file")
	if err := os.WriteFile(filepath.Join(notSocket+"-reg.sock"), []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, driver, endpoint, want string
	}{
		{"no driver name", dir, "", "/run/csi.sock", "driver name"},
		{"driver name with slash", dir, "a/b", "/run/csi.sock", `"a/b"`},
		{"relative endpoint", dir, driverName, "csi.sock", "absolute socket path"},
		{"tcp endpoint", dir, driverName, "tcp://127.0.0.1:10000", "absolute socket path"},
		{"no directory", "", driverName, "/run/csi.sock", "directory"},
		{"path too long", filepath.Join(dir, strings.Repeat("d", 100)), driverName, "/run/csi.sock", "at most 107"},
		{"not a socket", dir, "file", "/run/csi.sock", "not a socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Serve(t.Context(), tt.dir, tt.driver, tt.endpoint, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Serve: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if data, err := os.ReadFile(notSocket + "-reg.sock"); err != nil || string(data) != "data" {
		t.Errorf("a regular file in the socket's place was touched: %q, %v", data, err)
	}
}
