package overlay

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// A read-only volume of a single layer cannot be an overlay (overlayfs
// needs two lowers when it has no upper), so it is a read-only bind mount
// of the layer.

// bindDetached builds the read-only bind mount detached with open_tree and
// mount_setattr and only then attaches it, so target is never writable.
func bindDetached(src, target string) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount_setattr read-only on %s: %w", src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount %s to %s: %w", src, target, err)
	}
	return nil
}

// bindLegacy makes the read-only bind mount with mount(2), which ignores
// MS_RDONLY on MS_BIND and needs a second, remounting call; the mount is
// writable in between, and removed again if the remount fails.
func bindLegacy(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s at %s: %w", src, target, err)
	}
	if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		err = fmt.Errorf("remount bind mount at %s read-only: %w", target, err)
		if uerr := unix.Unmount(target, unix.UMOUNT_NOFOLLOW); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo bind mount at %s: %w", target, uerr))
		}
		return err
	}
	return nil
}
