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

// bindMount mounts src at target, creating target. mount(2) ignores
// MS_RDONLY on a new bind mount, so a read-only one takes a second,
// remounting call; the bind is removed again if that fails, never left
// writable.
func bindMount(src, target string, readOnly bool) error {
	if err := os.MkdirAll(target, 0o750); err != nil {
		return fmt.Errorf("create target: %w", err)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s at %s: %w", src, target, err)
	}
	if !readOnly {
		return nil
	}
	if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		err = fmt.Errorf("remount %s read-only: %w", target, err)
		if uerr := unix.Unmount(target, unix.UMOUNT_NOFOLLOW); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo bind mount at %s: %w", target, uerr))
		}
		return err
	}
	return nil
}

// isMounted reports whether path is a mount point.
func isMounted(path string) (bool, error) { return overlay.IsMounted(path) }

// removeMountPoint deletes the empty directory a volume was mounted on.
// os.Remove, not RemoveAll: should anything still be mounted there, the
// call fails instead of deleting the volume's content through the mount.
func removeMountPoint(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove mount point: %w", err)
	}
	return nil
}
