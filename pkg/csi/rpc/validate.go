package rpc

import (
	"path/filepath"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Argument checks. Each returns an InvalidArgument status that names the
// field, so a caller other than kubelet (csi-sanity, a script) can see
// what to fill in.

// RequireField fails with InvalidArgument when value is empty.
func RequireField(field, value string) error {
	if value == "" {
		return status.Errorf(codes.InvalidArgument, "%s is missing", field)
	}
	return nil
}

// RequirePath checks a path kubelet hands over: present and absolute, since
// the plugin's working directory means nothing to the caller.
func RequirePath(field, p string) error {
	if err := RequireField(field, p); err != nil {
		return err
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return status.Errorf(codes.InvalidArgument, "%s %q must be a clean absolute path without NUL bytes", field, p)
	}
	return nil
}

// RequireMountCapability accepts a mount access type with any defined
// access mode. The file system type and mount flags are ignored: the
// volume is always overlayfs.
func RequireMountCapability(c *csi.VolumeCapability) error {
	switch {
	case c == nil:
		return status.Error(codes.InvalidArgument, "volume capability is missing")
	case c.GetBlock() != nil:
		return status.Error(codes.InvalidArgument, "block access is not supported: a LayerSet volume is a file tree; use access type mount")
	case c.GetMount() == nil:
		return status.Error(codes.InvalidArgument, "volume capability has no access type; want mount")
	}
	mode := c.GetAccessMode().GetMode()
	if _, known := csi.VolumeCapability_AccessMode_Mode_name[int32(mode)]; !known || mode == csi.VolumeCapability_AccessMode_UNKNOWN {
		return status.Errorf(codes.InvalidArgument, "volume capability has no usable access mode (got %v)", mode)
	}
	return nil
}

// ReadOnlyMode reports whether an access mode allows reads only; such a
// volume is composed without a writable upper.
func ReadOnlyMode(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}
