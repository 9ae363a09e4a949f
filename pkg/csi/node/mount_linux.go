package node

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/pkg/overlay"
)

// The mount table operations of the node service, apart from the code
// that decides when to make them.

// bindMount mounts src at target, creating target.
func bindMount(src, target string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target: %w", err)
	}
	return overlay.Bind(src, target, overlay.BindOptions{ReadOnly: readOnly})
}

// isMounted reports whether path is a mount point.
func isMounted(path string) (bool, error) { return overlay.IsMounted(path) }

// removeMountPoint deletes the empty directory a volume was mounted on.
// rmdir(2), not os.Remove or RemoveAll: should anything still be mounted
// there, the call fails instead of deleting the volume's content through
// the mount, and a file or a symlink at path (not a mount point the plugin
// made) is left where it is.
func removeMountPoint(path string) error {
	err := unix.Rmdir(path)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ENOTDIR):
		return nil // not a directory: not ours to remove
	}
	return fmt.Errorf("remove mount point %s: %w", path, err)
}
