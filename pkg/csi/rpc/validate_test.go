package rpc

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRequireMountCapability(t *testing.T) {
	mode := func(m csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability_AccessMode {
		return &csi.VolumeCapability_AccessMode{Mode: m}
	}
	mount := &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4", MountFlags: []string{"noatime"}}}
	tests := []struct {
		name     string
		cap      *csi.VolumeCapability
		ok       bool
		readOnly bool
	}{
		{"nil", nil, false, false},
		{"no access type", &csi.VolumeCapability{AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}, false, false},
		{"block", &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}}, AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}, false, false},
		{"no access mode", &csi.VolumeCapability{AccessType: mount}, false, false},
		{"unknown mode", &csi.VolumeCapability{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_UNKNOWN)}, false, false},
		{"undefined mode", &csi.VolumeCapability{AccessType: mount, AccessMode: mode(99)}, false, false},
		{"single writer", &csi.VolumeCapability{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)}, true, false},
		{"multi writer", &csi.VolumeCapability{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)}, true, false},
		{"single reader", &csi.VolumeCapability{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)}, true, true},
		{"multi reader", &csi.VolumeCapability{AccessType: mount, AccessMode: mode(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := RequireMountCapability(tt.cap)
			if tt.ok != (err == nil) || (err != nil && status.Code(err) != codes.InvalidArgument) {
				t.Fatalf("requireMountCapability = %v, want ok=%t or InvalidArgument", err, tt.ok)
			}
			if got := ReadOnlyMode(tt.cap); got != tt.readOnly {
				t.Errorf("readOnlyMode = %t, want %t", got, tt.readOnly)
			}
		})
	}
}

func TestRequirePath(t *testing.T) {
	for p, ok := range map[string]bool{"": false, "rel": false, "/a/../b": false, "/a/": false, "/a/b": true, "/": true} {
		if err := RequirePath("target_path", p); ok != (err == nil) {
			t.Errorf("RequirePath(%q) = %v, want ok=%t", p, err, ok)
		}
	}
}
