package health

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type identity struct {
	csi.UnimplementedIdentityServer
	ready *wrapperspb.BoolValue
}

func (i identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: i.ready}, nil
}

// socketDir is short: unix socket paths are limited to 107 bytes and
// t.TempDir embeds the test name.
func socketDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "probe")
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

func serveIdentity(t *testing.T, ready *wrapperspb.BoolValue) string {
	t.Helper()
	sock := filepath.Join(socketDir(t), "csi.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	csi.RegisterIdentityServer(srv, identity{ready: ready})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return sock
}

func TestGRPCProbe(t *testing.T) {
	missing := filepath.Join(socketDir(t), "absent.sock")
	tests := []struct {
		name     string
		endpoint string
		wantErr  string // "" means the check passes
	}{
		{"ready", "unix://" + serveIdentity(t, wrapperspb.Bool(true)), ""},
		{"bare path", serveIdentity(t, wrapperspb.Bool(true)), ""},
		{"ready unset means ready", "unix://" + serveIdentity(t, nil), ""},
		{"not ready", "unix://" + serveIdentity(t, wrapperspb.Bool(false)), "not ready"},
		{"no socket", "unix://" + missing, missing},
		{"tcp refused", "tcp://127.0.0.1:1", "want unix:///absolute/path.sock"},
		{"empty", "", "no endpoint given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := GRPCProbe(tt.endpoint)(t.Context())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("probe failed: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("probe error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// The probe plugs into /healthz: a plugin that goes away turns it to 503.
func TestGRPCProbeInHealthz(t *testing.T) {
	sock := serveIdentity(t, wrapperspb.Bool(true))
	url := serve(t, nil, GRPCProbe("unix://"+sock)) + "/healthz"
	if code, body := get(t, url); code != 200 {
		t.Fatalf("status %d %q with the plugin up", code, body)
	}
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if code, body := get(t, url); code != 503 || !strings.Contains(body, sock) {
		t.Errorf("status %d %q with the plugin's socket gone, want 503 naming %s", code, body, sock)
	}
}
