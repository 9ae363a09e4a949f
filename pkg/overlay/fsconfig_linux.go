package overlay

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountFSConfig mounts c at target through fsopen/fsconfig/fsmount/
// move_mount. Each layer is its own fsconfig call, so unlike mount(2) there
// is no page of option data to fit into. Whether the kernel can do this is
// Resolve's to find out, once. c is valid (mount checked it).
func mountFSConfig(c Config, t *mountTarget) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)

	params, err := validFSConfigParams(c)
	if err != nil {
		return err
	}
	for _, p := range params {
		var err error
		if p.value == "" {
			err = unix.FsconfigSetFlag(fd, p.key)
		} else {
			err = unix.FsconfigSetString(fd, p.key, p.value)
		}
		if err != nil {
			return fsconfigError(fd, "fsconfig "+p.String(), err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fsconfigError(fd, fmt.Sprintf("fsconfig create (%d lowers)", len(c.Lowers)), err)
	}
	flags := c.Flags
	flags.ReadOnly = flags.ReadOnly || c.readOnly()
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, int(flags.attr()))
	if err != nil {
		return fsconfigError(fd, "fsmount", err)
	}
	// Until move_mount attaches it, the mount is private to mfd and
	// closing mfd dissolves it, so a failure below leaves nothing behind.
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", t.fd, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", t.path, err)
	}
	return nil
}

// fsconfigError wraps err from op on the fs_context fd with what the
// kernel logged there, which is often the only account of what was wrong.
func fsconfigError(fd int, op string, err error) error {
	if log := fsLog(fd); len(log) > 0 {
		return fmt.Errorf("%s: %w (kernel: %s)", op, err, strings.Join(log, "; "))
	}
	return fmt.Errorf("%s: %w (no fs_context log; overlayfs may have logged details to dmesg)", op, err)
}

// fsLog drains the fs_context's message log: read(2) on the fsopen fd
// returns one queued "e|w|i <fs>: <text>" message per call until ENODATA.
// The kernel keeps at most 8 messages; the bound only guards the loop.
func fsLog(fd int) []string {
	var msgs []string
	buf := make([]byte, 4096)
	for range 32 {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EMSGSIZE) {
			// The kernel dequeues a message even when it does not fit.
			msgs = append(msgs, "(message longer than 4096 bytes dropped)")
			continue
		}
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	return msgs
}
