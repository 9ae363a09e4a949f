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
	t, err := openTarget(target)
	if err != nil {
		return err
	}
	defer t.close()
	if c.readOnly() && len(c.Lowers) == 1 {
		flags := c.Flags
		flags.ReadOnly = true
		return bind(filepath.Join(c.Dir, c.Lowers[0]), t, BindOptions{Flags: flags, Mode: mode})
	}
	switch mode {
	case ModeFSConfig:
		return mountFSConfig(c, t)
	case ModeLegacy:
		return mountLegacy(c, t)
	}
	return fmt.Errorf("unknown mode %s", mode)
}

// Unmount unmounts the mount on top of target, once: what lies below it
// (a mount another program made before) is left alone. It returns nil when
// target is not a mount point or does not exist, so that it can be retried
// freely, and refuses a target whose path holds a symlink.
func Unmount(ctx context.Context, target string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if err := CheckTarget(target); errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil
	} else if err != nil {
		return err
	}
	err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) { // EINVAL: not a mount point
		return nil
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// MountDev returns the device number of the filesystem on top of path:
// for an overlay, its superblock's own, which any bind of it shares and
// any other mount over it lacks. Recorded when a mount is made, it tells
// that mount from one made over it or in its place later. Unlike a mount
// id it is the same in every mount namespace, so a plugin restarted in a
// new container still knows its mounts.
func MountDev(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, fmt.Errorf("device of %s: %w", path, err)
	}
	return st.Dev, nil
}

// IsMounted reports whether target is a mount point; a target that does
// not exist is not one. A mount whose filesystem no longer answers
// (ENOTCONN, ESTALE, EIO and the others k8s.io/mount-utils calls
// corrupted, as after a crashed FUSE daemon or a node restart) is one, so
// that callers unmount it rather than fail on it.
//
// A path without symlinks, as the plugin's targets are, is answered by
// two openat2(2) calls: the last component opened from its parent with
// RESOLVE_NO_XDEV fails with EXDEV exactly when a mount is on it. Anything
// else (a symlink on the way, an old kernel, an error) goes to moby/sys/
// mountinfo, which first resolves the symlinks of the path, a syscall per
// component, and then does the same or compares mount ids. Both cost a
// few syscalls however many mounts the node has, where mount-utils'
// IsMountPoint reads all of /proc/self/mountinfo, and a node of this
// driver has a mount per volume.
func IsMounted(target string) (bool, error) {
	if mounted, ok := mountedNoSymlinks(target); ok {
		return mounted, nil
	}
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

// mountedNoSymlinks is IsMounted for an absolute path without symlinks;
// known is false when it cannot tell, and the caller asks mountinfo.
func mountedNoSymlinks(target string) (mounted, known bool) {
	dir, last := filepath.Split(target)
	if !filepath.IsAbs(target) || last == "" || last == "." || last == ".." {
		return false, false
	}
	dirfd, err := unix.Openat2(unix.AT_FDCWD, dir, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) {
		return false, true // no parent, so no target
	}
	if err != nil {
		return false, false
	}
	defer unix.Close(dirfd)
	// No O_NOFOLLOW: with RESOLVE_NO_SYMLINKS a symlink at the end fails
	// with ELOOP, and mountinfo, which follows it, answers.
	fd, err := unix.Openat2(dirfd, last, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_XDEV | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	switch {
	case err == nil:
		unix.Close(fd)
		return false, true
	case errors.Is(err, unix.EXDEV):
		return true, true
	case errors.Is(err, unix.ENOENT):
		return false, true
	}
	return false, false
}
