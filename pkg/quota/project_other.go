//go:build !linux

package quota

import (
	"fmt"
	"runtime"
)

// Project quotas are Linux's (XFS and ext4 with quotactl_fd); elsewhere
// every call fails with ErrUnsupported, so that the package builds for the
// cluster-side tools and a node falls back or refuses sized volumes.

// ProbeProject returns an error wrapping ErrUnsupported: project quotas
// need Linux.
func ProbeProject(dir string) error {
	return unsupportedOS("probe project quotas", dir)
}

// SetProject returns an error wrapping ErrUnsupported.
func SetProject(dir string, id uint32) error {
	return unsupportedOS(fmt.Sprintf("set project %d", id), dir)
}

// ProjectOf returns an error wrapping ErrUnsupported.
func ProjectOf(dir string) (uint32, error) {
	return 0, unsupportedOS("project of", dir)
}

// SetProjectLimit returns an error wrapping ErrUnsupported.
func SetProjectLimit(dir string, id uint32, bytes int64) error {
	return unsupportedOS(fmt.Sprintf("set limit of project %d to %d bytes", id, bytes), dir)
}

// ProjectUsage returns an error wrapping ErrUnsupported.
func ProjectUsage(dir string, id uint32) (Usage, error) {
	return Usage{}, unsupportedOS(fmt.Sprintf("usage of project %d", id), dir)
}

func unsupportedOS(op, dir string) error {
	return fmt.Errorf("%s: %s: project quotas %w on %s: they need Linux", op, dir, ErrUnsupported, runtime.GOOS)
}
