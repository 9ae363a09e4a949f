package overlay

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// BindOptions configure Bind.
type BindOptions struct {
	// ReadOnly binds cannot be written through.
	ReadOnly bool
	// Mode ModeLegacy uses mount(2); the others build the bind detached
	// (open_tree, Linux 5.12+ for read-only), ModeAuto falling back to
	// mount(2) where the kernel lacks it.
	Mode Mode
}

// Bind bind-mounts src at target, an existing directory given by absolute
// path. A read-only bind is made read-only before it is attached where the
// kernel can, so target is never writable, not even for an instant.
//
// The package makes every mount of the plugin, overlay and bind alike, so
// that one place knows which syscalls change the mount table.
func Bind(src, target string, opts BindOptions) error {
	if !filepath.IsAbs(src) || !filepath.IsAbs(target) {
		return fmt.Errorf("bind %q at %q: paths must be absolute", src, target)
	}
	t, err := openTarget(target)
	if err != nil {
		return err
	}
	defer t.close()
	return bind(src, t, opts)
}

func bind(src string, target *mountTarget, opts BindOptions) error {
	switch opts.Mode {
	case ModeAuto:
		err := bindDetached(src, target, opts.ReadOnly)
		if errors.Is(err, unix.ENOSYS) { // open_tree is 5.2+, mount_setattr 5.12+
			return bindLegacy(src, target, opts.ReadOnly)
		}
		return err
	case ModeFSConfig:
		return bindDetached(src, target, opts.ReadOnly)
	case ModeLegacy:
		return bindLegacy(src, target, opts.ReadOnly)
	}
	return fmt.Errorf("unknown mode %s", opts.Mode)
}

// bindDetached builds the bind mount detached with open_tree (and
// mount_setattr, for a read-only one) and only then attaches it.
func bindDetached(src string, t *mountTarget, readOnly bool) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	// Until move_mount attaches it, closing fd dissolves the clone.
	defer unix.Close(fd)
	if readOnly {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("mount_setattr read-only on %s: %w", src, err)
		}
	}
	if err := unix.MoveMount(fd, "", t.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount %s to %s: %w", src, t.path, err)
	}
	return nil
}

// bindLegacy makes the bind mount with mount(2), which ignores MS_RDONLY
// on MS_BIND and needs a second, remounting call for a read-only one; the
// mount is writable in between, and removed again if the remount fails.
func bindLegacy(src string, t *mountTarget, readOnly bool) error {
	if err := unix.Mount(src, t.proc(), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s at %s: %w", src, t.path, err)
	}
	if !readOnly {
		return nil
	}
	// t's descriptor holds the directory below the new mount; the remount
	// is for the mount on top, reached by opening the path again.
	top, err := openTarget(t.path)
	if err == nil {
		err = unix.Mount("", top.proc(), "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
		top.close()
	}
	if err != nil {
		err = fmt.Errorf("remount bind mount at %s read-only: %w", t.path, err)
		if uerr := unix.Unmount(t.path, unix.UMOUNT_NOFOLLOW); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo bind mount at %s: %w", t.path, uerr))
		}
		return err
	}
	return nil
}
