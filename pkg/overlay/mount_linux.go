package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Mount mounts c at target, an existing directory given by absolute path,
// with index=off.
//
// A read-only Config (no Upper) of a single layer becomes a read-only bind
// mount of that layer, since overlayfs needs two lowers without an upper;
// one of two or more layers becomes an overlay of lowers only, mounted
// read-only.
//
// ctx is checked before anything is mounted; a mount syscall, once made,
// runs to completion so that no mount is left unaccounted for. Errors wrap
// the syscall's errno (errors.Is(err, unix.EBUSY) and so on) and the
// package's sentinel errors.
func Mount(ctx context.Context, c Config, target string, mode Mode) error {
	if err := mount(ctx, c, target, mode); err != nil {
		return fmt.Errorf("mount %d-layer volume from %s at %s (mode %s): %w", len(c.Lowers), c.Dir, target, mode, err)
	}
	return nil
}

func mount(ctx context.Context, c Config, target string, mode Mode) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	// The legacy path runs in another working directory.
	if !filepath.IsAbs(target) {
		return fmt.Errorf("target %q is not an absolute path", target)
	}
	if c.readOnly() && len(c.Lowers) == 1 {
		src := filepath.Join(c.Dir, c.Lowers[0])
		switch mode {
		case ModeAuto:
			err := bindDetached(src, target)
			if errors.Is(err, unix.ENOSYS) { // open_tree is 5.2+, mount_setattr 5.12+
				return bindLegacy(src, target)
			}
			return err
		case ModeFSConfig:
			return bindDetached(src, target)
		case ModeLegacy:
			return bindLegacy(src, target)
		}
		return fmt.Errorf("unknown mode %s", mode)
	}
	switch mode {
	case ModeAuto:
		err := mountFSConfig(c, target)
		if !errors.Is(err, ErrNoLowerdirPlus) {
			return err
		}
		if lerr := mountLegacy(c, target); lerr != nil {
			return fmt.Errorf("%w, and mount(2) failed: %w", err, lerr)
		}
		return nil
	case ModeFSConfig:
		return mountFSConfig(c, target)
	case ModeLegacy:
		return mountLegacy(c, target)
	}
	return fmt.Errorf("unknown mode %s", mode)
}

// Unmount unmounts everything mounted at target, which may be a stack of
// mounts (as left by a retried Mount). It returns nil when target is not a
// mount point or does not exist, so that it can be retried freely.
func Unmount(ctx context.Context, target string) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			// EINVAL: not a mount point (any more).
			return nil
		}
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// IsMounted reports whether target is a mount point; a target that does
// not exist is not one.
func IsMounted(target string) (bool, error) {
	ok, err := mountinfo.Mounted(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check mount point %s: %w", target, err)
	}
	return ok, nil
}
