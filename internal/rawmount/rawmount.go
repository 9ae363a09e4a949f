// Package rawmount is the benchmarks' baseline: an overlayfs mount made
// with nothing but the syscalls, no validation, no store, no bookkeeping.
package rawmount

import (
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FSConfig mounts an overlay of lowers (uppermost first), upper and work,
// all relative to dir, at target through fsopen/fsconfig/fsmount/
// move_mount, one lowerdir+ per layer.
func FSConfig(dir string, lowers []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", filepath.Join(dir, l)); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{{"upperdir", filepath.Join(dir, upper)}, {"workdir", filepath.Join(dir, work)}, {"index", "off"}} {
		if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return err
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}
