// Package identity is the CSI Identity service of layerset-csi: it names
// the plugin, says which other services the process serves, and answers
// Probe by asking each of them whether it can serve.
package identity

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Checker is implemented by services that can tell whether they are
// able to serve; Probe asks each.
type Checker interface {
	Check(ctx context.Context) error
}

// CapabilityProvider is implemented by a service whose presence adds
// plugin capabilities of its own (the node's snapshot service adds
// SNAPSHOT_ACCESSIBILITY_CONSTRAINTS). A Checker among Options.Checks
// that is also a CapabilityProvider has its capabilities reported after
// the others: server.Serve gives Identity each of its services that is a
// Checker.
type CapabilityProvider interface {
	PluginCapabilities() []*csi.PluginCapability
}

// Options say what the Identity service reports.
type Options struct {
	Name, Version string
	// Controller is whether the process serves the Controller service.
	Controller bool
	// Checks are asked, in order, by Probe; those that are also
	// CapabilityProviders add their plugin capabilities.
	Checks []Checker
}

// Server is the CSI Identity service.
type Server struct {
	csi.UnimplementedIdentityServer

	opts Options
}

// New returns the Identity service.
func New(opts Options) *Server { return &Server{opts: opts} }

// GetPluginInfo names the plugin and its version.
func (s *Server) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: s.opts.Name, VendorVersion: s.opts.Version}, nil
}

// GetPluginCapabilities lists the services served besides Identity and
// Node, with the controller online volume expansion, and what the
// services that provide capabilities add.
func (s *Server) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	service := func(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
		return &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}}
	}
	// Persistent volumes keep their writes on one node: volumes are
	// reachable from the node whose topology segment they carry.
	caps := []*csi.PluginCapability{service(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS)}
	if s.opts.Controller {
		// Volumes grow while in use: ControllerExpandVolume records the
		// size, the node raises the live volume's limit. Announced with
		// the controller service, whose EXPAND_VOLUME capability the CSI
		// spec requires with it, and which external-resizer talks to.
		caps = append(caps, service(csi.PluginCapability_Service_CONTROLLER_SERVICE),
			&csi.PluginCapability{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{
				Type: csi.PluginCapability_VolumeExpansion_ONLINE,
			}}})
	}
	for _, c := range s.opts.Checks {
		if p, ok := c.(CapabilityProvider); ok {
			caps = append(caps, p.PluginCapabilities()...)
		}
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: caps}, nil
}

// Probe reports ready when every check passes.
func (s *Server) Probe(ctx context.Context, _ *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	for _, c := range s.opts.Checks {
		if err := c.Check(ctx); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "not ready: %v", err)
		}
	}
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}
