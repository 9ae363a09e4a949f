package overlay

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	mountutils "k8s.io/mount-utils"
)

// Mount mounts c at target, an existing directory given by absolute path,
// with index=off. ModeAuto probes the kernel at every call: a caller that
// mounts often resolves the mode once, with Resolve, and passes that.
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
	if mode == ModeAuto {
		var err error
		if mode, err = Resolve(mode); err != nil {
			return err
		}
	}
	if c.readOnly() && len(c.Lowers) == 1 {
		return Bind(filepath.Join(c.Dir, c.Lowers[0]), target, BindOptions{ReadOnly: true, Mode: mode})
	}
	switch mode {
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
// not exist is not one. A mount whose filesystem no longer answers
// (ENOTCONN, ESTALE, EIO and the others k8s.io/mount-utils calls
// corrupted, as after a crashed FUSE daemon or a node restart) is one, so
// that callers unmount it rather than fail on it.
//
// Detection is moby/sys/mountinfo's: it compares the mount ids of target
// and its parent (statx, openat2), which costs a few syscalls however many
// mounts the node has, where mount-utils' IsMountPoint reads all of
// /proc/self/mountinfo, and a node of this driver has a mount per volume.
func IsMounted(target string) (bool, error) {
	ok, err := mountinfo.Mounted(target)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil && mountutils.IsCorruptedMnt(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("check mount point %s: %w", target, err)
	}
	return ok, nil
}
