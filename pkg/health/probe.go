package health

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// GRPCProbe returns a Check that calls CSI Identity.Probe on endpoint, a
// unix socket given as unix:///path or /path. A plugin that answers without
// setting ready is ready, as the CSI spec says; one that sets ready=false is
// not. Each call dials afresh, so a restarted plugin is seen at once.
func GRPCProbe(endpoint string) Check {
	target, err := grpcTarget(endpoint)
	return func(ctx context.Context) (perr error) {
		if err != nil {
			return err
		}
		conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("probe CSI endpoint %s: %w", endpoint, err)
		}
		defer func() {
			if cerr := conn.Close(); cerr != nil {
				perr = errors.Join(perr, fmt.Errorf("probe CSI endpoint %s: %w", endpoint, cerr))
			}
		}()
		resp, err := csi.NewIdentityClient(conn).Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			return fmt.Errorf("probe CSI endpoint %s: %w", endpoint, err)
		}
		if r := resp.GetReady(); r != nil && !r.GetValue() {
			return fmt.Errorf("CSI plugin at %s reports it is not ready", endpoint)
		}
		return nil
	}
}

// grpcTarget turns a CSI endpoint into a gRPC dial target.
func grpcTarget(endpoint string) (string, error) {
	switch {
	case strings.HasPrefix(endpoint, "unix:///"):
		return endpoint, nil
	case strings.HasPrefix(endpoint, "/"):
		return "unix://" + endpoint, nil
	case endpoint == "":
		return "", errors.New("probe CSI endpoint: no endpoint given")
	default:
		return "", fmt.Errorf("probe CSI endpoint %q: want unix:///absolute/path.sock or /absolute/path.sock", endpoint)
	}
}
