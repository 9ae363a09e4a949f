package overlay

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Resolve settles ModeAuto into the mode this kernel supports: ModeFSConfig
// where overlayfs takes "lowerdir+" (Linux 6.8+), ModeLegacy otherwise.
// ModeFSConfig on a kernel without it is an error wrapping
// ErrNoLowerdirPlus; ModeLegacy is returned as it is. A kernel's features
// do not change while it runs, so a caller probes once, at start, as
// containerd's snapshotter does, not at every mount.
func Resolve(mode Mode) (Mode, error) {
	if mode == ModeLegacy {
		return mode, nil
	}
	ok, err := probeLowerdirPlus()
	switch {
	case err != nil:
		return mode, err
	case ok:
		return ModeFSConfig, nil
	case mode == ModeFSConfig:
		return mode, ErrNoLowerdirPlus
	}
	return ModeLegacy, nil
}

// probeLowerdirPlus asks a fresh overlay fs_context whether it knows
// "lowerdir+"; see lowerdirPlusFromProbe. Nothing is mounted.
func probeLowerdirPlus() (bool, error) {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if errors.Is(err, unix.ENOSYS) { // no new mount API at all (before 5.2)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("probe overlayfs: fsopen: %w", err)
	}
	defer unix.Close(fd)
	probeErr := unix.FsconfigSetFlag(fd, "lowerdir+")
	return lowerdirPlusFromProbe(probeErr, fsLog(fd)), nil
}
