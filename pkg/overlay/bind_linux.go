package overlay

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// BindOptions configure Bind.
type BindOptions struct {
	// Flags are the bind's attributes (Flags.ReadOnly: it cannot be
	// written through).
	Flags Flags
	// Mode ModeLegacy uses mount(2); the others build the bind detached
	// (open_tree, Linux 5.12+ for read-only), ModeAuto falling back to
	// mount(2) where the kernel lacks it.
	Mode Mode
}

// Bind bind-mounts src at target, an existing directory given by absolute
// path. A read-only bind is made read-only (and nosuid, nodev, ... as
// Flags say) before it is attached where the kernel can, so target is
// never writable, not even for an instant.
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
		err := bindDetached(src, target, opts.Flags)
		if errors.Is(err, unix.ENOSYS) { // open_tree is 5.2+, mount_setattr 5.12+
			return bindLegacy(src, target, opts.Flags)
		}
		return err
	case ModeFSConfig:
		return bindDetached(src, target, opts.Flags)
	case ModeLegacy:
		return bindLegacy(src, target, opts.Flags)
	}
	return fmt.Errorf("unknown mode %s", opts.Mode)
}

// bindDetached builds the bind mount detached with open_tree (and
// mount_setattr, for a read-only one) and only then attaches it.
func bindDetached(src string, t *mountTarget, flags Flags) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", src, err)
	}
	// Until move_mount attaches it, closing fd dissolves the clone.
	defer unix.Close(fd)
	if flags != (Flags{}) {
		attr := flags.setattr()
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("mount_setattr %s on %s: %w", flags, src, err)
		}
	}
	if err := unix.MoveMount(fd, "", t.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount %s to %s: %w", src, t.path, err)
	}
	return nil
}

// bindLegacy makes the bind mount with mount(2), which ignores MS_RDONLY
// (and the other per-mount flags) on MS_BIND and needs a second,
// remounting call; the mount is writable in between, and removed again if
// the remount fails.
func bindLegacy(src string, t *mountTarget, flags Flags) error {
	if err := unix.Mount(src, t.proc(), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s at %s: %w", src, t.path, err)
	}
	if flags == (Flags{}) {
		return nil
	}
	// t's descriptor holds the directory below the new mount; the remount
	// is for the mount on top, reached by opening the path again.
	top, err := openTarget(t.path)
	if err == nil {
		err = unix.Mount("", top.proc(), "", unix.MS_REMOUNT|unix.MS_BIND|flags.ms(), "")
		top.close()
	}
	if err != nil {
		err = fmt.Errorf("remount bind mount at %s %s: %w", t.path, flags, err)
		if uerr := unix.Unmount(t.path, unix.UMOUNT_NOFOLLOW); uerr != nil {
			err = errors.Join(err, fmt.Errorf("undo bind mount at %s: %w", t.path, uerr))
		}
		return err
	}
	return nil
}
