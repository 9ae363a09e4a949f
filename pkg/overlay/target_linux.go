package overlay

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrSymlinkInTarget is returned for a mount target whose path holds a
// symlink. Following it would mount the volume wherever the link points
// (over /etc, say), and unmount would then miss that mount.
var ErrSymlinkInTarget = errors.New("mount target path contains a symlink")

// mountTarget is an open mount target: the directory is resolved once, without
// following any symlink, and the mount goes onto that very directory
// through its descriptor, so a path swapped in between cannot redirect it.
type mountTarget struct {
	path string
	fd   int // O_PATH
}

// openTarget opens the directory path for mounting onto. The kernel
// refuses any symlink on the way (openat2 RESOLVE_NO_SYMLINKS); before
// Linux 5.6 only the last component is checked (O_NOFOLLOW).
func openTarget(path string) (*mountTarget, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOSYS) {
		fd, err = unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	switch {
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("%w: %s; give the path without links (for kubelet: its real root directory, the chart's kubeletRootDir)", ErrSymlinkInTarget, path)
	case err != nil:
		return nil, fmt.Errorf("open mount target %s: %w", path, err)
	}
	return &mountTarget{path: path, fd: fd}, nil
}

// proc names the target for syscalls that take only a path (mount(2)):
// the kernel resolves the magic link to the directory the descriptor
// holds, whatever the path names by then.
func (t *mountTarget) proc() string { return "/proc/self/fd/" + strconv.Itoa(t.fd) }

func (t *mountTarget) close() { unix.Close(t.fd) }

// CheckTarget reports whether path can be a mount target: it resolves to
// a directory with no symlink on the way. Callers that validate before
// they act (an unmount, which cannot be made by descriptor) use it.
func CheckTarget(path string) error {
	t, err := openTarget(path)
	if err != nil {
		return err
	}
	t.close()
	return nil
}

// MakeTarget creates the directory path, and its missing parents, with
// mode 0750, following no symlink on the way: a mount target made by
// os.MkdirAll could be made wherever a link in its path points.
func MakeTarget(path string) error {
	_, err := PrepareTarget(path)
	return err
}

// TargetState says what PrepareTarget found.
type TargetState int

const (
	// TargetFound is a directory that was there already, which may have a
	// mount on it.
	TargetFound TargetState = iota
	// TargetMade is a directory PrepareTarget made: nothing is mounted on
	// it.
	TargetMade
)

// PrepareTarget is MakeTarget, and says whether it made the directory, so
// that a caller need not ask whether something is mounted on a directory
// it just made.
//
// A target is usually new and its parent there, as kubelet makes it: then
// the directory is made under the parent's descriptor and needs no check
// of its own, since what mkdirat(2) just made is a directory, not a link.
func PrepareTarget(path string) (TargetState, error) {
	parent := filepath.Dir(path)
	if parent == path {
		return TargetFound, CheckTarget(path)
	}
	p, err := openTarget(parent)
	if errors.Is(err, fs.ErrNotExist) {
		if err := MakeTarget(parent); err != nil {
			return TargetFound, err
		}
		p, err = openTarget(parent)
	}
	if err != nil {
		return TargetFound, err
	}
	defer p.close()
	err = unix.Mkdirat(p.fd, filepath.Base(path), 0o750)
	switch {
	case err == nil:
		return TargetMade, nil
	case errors.Is(err, unix.EEXIST):
		return TargetFound, CheckTarget(path) // it may be a file, or a link
	}
	return TargetFound, fmt.Errorf("create mount target %s: %w", path, err)
}
