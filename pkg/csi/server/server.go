// Package server serves the CSI services of layerset-csi over a unix
// socket: it opens the endpoint, registers Identity and the services it is
// given, and wraps every call with logging, metrics and panic recovery.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/layerset/layerset-csi/pkg/csi/identity"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

const defaultGracePeriod = 10 * time.Second

// Options configure Serve.
type Options struct {
	DriverName string // default names.DriverName
	Version    string
	// Metrics receives the call latency histogram; nil means no metrics.
	Metrics prometheus.Registerer
	// GracePeriod bounds how long calls in flight may finish once ctx
	// ends; zero means 10s. Calls still running then are cancelled.
	GracePeriod time.Duration
}

// Serve serves CSI on lis until ctx ends: Identity, and each service
// given, which must implement csi.NodeServer or csi.ControllerServer (the node or
// controller server). Services with a Check(ctx) error method
// answer Identity's Probe.
func Serve(ctx context.Context, lis net.Listener, opts Options, services ...any) error {
	if opts.DriverName == "" {
		opts.DriverName = names.DriverName
	}
	if opts.Version == "" {
		opts.Version = "unknown"
	}
	if opts.GracePeriod <= 0 {
		opts.GracePeriod = defaultGracePeriod
	}
	metrics, err := newCallMetrics(opts.Metrics)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(callInterceptor(metrics)))
	id := identity.Options{Name: opts.DriverName, Version: opts.Version}
	var node, controller bool
	for _, s := range services {
		ns, isNode := s.(csi.NodeServer)
		cs, isController := s.(csi.ControllerServer)
		switch {
		case !isNode && !isController:
			return fmt.Errorf("serve: %T is neither a CSI node nor a controller service", s)
		case (isNode && node) || (isController && controller):
			return fmt.Errorf("serve: %T provides a service given twice", s)
		}
		if isNode {
			csi.RegisterNodeServer(srv, ns)
			node = true
		}
		if isController {
			csi.RegisterControllerServer(srv, cs)
			controller, id.Controller = true, true
		}
		if c, ok := s.(identity.Checker); ok {
			id.Checks = append(id.Checks, c)
		}
	}
	csi.RegisterIdentityServer(srv, identity.New(id))

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve CSI on %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(opts.GracePeriod)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		srv.Stop()
		<-stopped
	}
	if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}
