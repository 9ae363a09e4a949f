package registration

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// DefaultVersion is the CSI version announced when Serve is given none.
const DefaultVersion = "1.0.0"

// Serve listens on dir/<driverName>-reg.sock and answers the kubelet's
// registration calls until ctx ends; then it removes the socket, which
// tells the kubelet the plugin is gone, and returns nil.
//
// endpoint is the plugin's CSI socket as the kubelet sees it, a path in the
// kubelet's file system (unix:// is accepted and dropped: the kubelet dials
// the path itself). versions are the CSI versions the plugin speaks;
// [DefaultVersion] when empty.
func Serve(ctx context.Context, dir, driverName, endpoint string, versions []string) error {
	info, err := pluginInfo(driverName, endpoint, versions)
	if err != nil {
		return err
	}
	if dir == "" {
		return errors.New("registration: no plugin registration directory given")
	}
	sock := filepath.Join(dir, driverName+"-reg.sock")
	l, err := listen(ctx, sock)
	if err != nil {
		return fmt.Errorf("registration: %w", err)
	}
	defer l.remove(ctx)

	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, &server{info: info})
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.Stop() // the kubelet's calls are one-shot; nothing worth draining
		case <-stopped:
		}
	}()
	klog.FromContext(ctx).Info("Serving kubelet plugin registration", "socket", sock, "driver", driverName, "endpoint", info.Endpoint)
	err = srv.Serve(l)
	close(stopped)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("registration: serve on %s: %w", sock, err)
}

// pluginInfo validates Serve's arguments into the answer to GetInfo.
func pluginInfo(driverName, endpoint string, versions []string) (*registerapi.PluginInfo, error) {
	if driverName == "" || strings.ContainsAny(driverName, "/\x00") {
		return nil, fmt.Errorf("registration: driver name %q must be non-empty and contain no '/'", driverName)
	}
	path := strings.TrimPrefix(endpoint, "unix://")
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("registration: CSI endpoint %q must be an absolute socket path, as the kubelet sees it", endpoint)
	}
	if len(versions) == 0 {
		versions = []string{DefaultVersion}
	}
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              driverName,
		Endpoint:          filepath.Clean(path),
		SupportedVersions: append([]string(nil), versions...),
	}, nil
}

type server struct {
	registerapi.UnimplementedRegistrationServer
	info *registerapi.PluginInfo
}

func (s *server) GetInfo(ctx context.Context, _ *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	klog.FromContext(ctx).V(2).Info("Kubelet asked for plugin info", "driver", s.info.Name)
	return s.info, nil
}

func (s *server) NotifyRegistrationStatus(ctx context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	logger := klog.FromContext(ctx)
	if st.GetPluginRegistered() {
		logger.Info("Kubelet registered the plugin", "driver", s.info.Name, "endpoint", s.info.Endpoint)
	} else {
		// The kubelet asks again when the socket is recreated; restarting
		// the process after fixing the cause is the way out.
		logger.Error(errors.New(st.GetError()), "Kubelet refused to register the plugin", "driver", s.info.Name, "endpoint", s.info.Endpoint)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
