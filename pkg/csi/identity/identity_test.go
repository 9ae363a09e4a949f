package identity

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// describe renders a capability for comparison, e.g. "service
// CONTROLLER_SERVICE" or "expansion ONLINE".
func describe(c *csi.PluginCapability) string {
	switch {
	case c.GetService() != nil:
		return "service " + c.GetService().GetType().String()
	case c.GetVolumeExpansion() != nil:
		return "expansion " + c.GetVolumeExpansion().GetType().String()
	}
	return "unknown " + c.String()
}

func TestGetPluginCapabilities(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{name: "node only", opts: Options{}, want: []string{"service VOLUME_ACCESSIBILITY_CONSTRAINTS"}},
		{name: "with the controller", opts: Options{Controller: true},
			want: []string{"service VOLUME_ACCESSIBILITY_CONSTRAINTS", "service CONTROLLER_SERVICE", "expansion ONLINE"}},
		// The node's snapshot service: a controller service that says
		// where its snapshots are usable.
		{name: "with a service providing capabilities", opts: Options{Controller: true, Checks: []Checker{providing{}}},
			want: []string{"service VOLUME_ACCESSIBILITY_CONSTRAINTS", "service CONTROLLER_SERVICE", "expansion ONLINE",
				"service SNAPSHOT_ACCESSIBILITY_CONSTRAINTS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := New(tt.opts).GetPluginCapabilities(t.Context(), &csi.GetPluginCapabilitiesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range resp.GetCapabilities() {
				got = append(got, describe(c))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("capabilities %q, want %q", got, tt.want)
			}
		})
	}
}

// providing is a service that adds a plugin capability.
type providing struct{}

func (providing) Check(context.Context) error { return nil }

func (providing) PluginCapabilities() []*csi.PluginCapability {
	return []*csi.PluginCapability{{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{
		Type: csi.PluginCapability_Service_SNAPSHOT_ACCESSIBILITY_CONSTRAINTS}}}}
}

type checkFunc func(context.Context) error

func (f checkFunc) Check(ctx context.Context) error { return f(ctx) }

func TestProbe(t *testing.T) {
	ok := checkFunc(func(context.Context) error { return nil })
	broken := checkFunc(func(context.Context) error { return errors.New("records are not writable") })
	s := New(Options{Checks: []Checker{ok, broken}})
	_, err := s.Probe(t.Context(), &csi.ProbeRequest{})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "not ready: records are not writable" {
		t.Errorf("probe with a failing check: %v", err)
	}
	resp, err := New(Options{Checks: []Checker{ok}}).Probe(t.Context(), &csi.ProbeRequest{})
	if err != nil || !resp.GetReady().GetValue() {
		t.Errorf("probe with passing checks: %v, %v", resp, err)
	}
}
