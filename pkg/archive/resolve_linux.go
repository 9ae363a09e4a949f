package archive

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// dirCreation says whether opening a layer directory makes the missing
// ones on the way.
type dirCreation int

const (
	existingDirs dirCreation = iota
	makeDirs
)

// implicitDirMode is the mode of parent directories a layer uses without
// listing them, as GNU tar and moby create them.
const implicitDirMode = 0o755

// dirHandle is an open directory of the layer, by cleaned name.
type dirHandle struct {
	name string
	fd   int
	info dirInfo
}

// parentDir returns the directory name, keeping the last one open: tar
// writers emit a directory's entries together, so one cached descriptor saves
// the path walk for most entries. The handle stays valid until the next call.
// The cache can't go stale: a directory is removed, or its owner and mode
// changed, only by its own entry, whose parent is then the cached one (the
// root, which has no parent, drops the cache in rootDir).
func (a *applier) parentDir(name string, create dirCreation) (*dirHandle, error) {
	if a.cur.fd >= 0 && a.cur.name == name {
		return &a.cur, nil
	}
	fd, err := a.openDir(name, create)
	if err != nil {
		return nil, err
	}
	info, err := readDirInfo(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inspecting directory %q: %w", name, err)
	}
	a.closeCur()
	a.cur = dirHandle{name: name, fd: fd, info: info}
	return &a.cur, nil
}

func (a *applier) closeCur() {
	if a.cur.fd >= 0 {
		unix.Close(a.cur.fd)
		a.cur = dirHandle{fd: -1}
	}
}

// openDir opens the layer directory name without following any symlink and
// without leaving the layer root; the kernel enforces both. With create,
// missing directories are made.
//
// Neither os.Root nor filepath-securejoin's OpenInRoot does this: both
// follow a symlink that stays inside the root, so a layer could write
// through a link its own earlier entry made (a/ -> b/, then a/x). A tar
// applier must refuse that, as the kernel's RESOLVE_NO_SYMLINKS does in
// one call; the walk below is its fallback where openat2 is missing.
func (a *applier) openDir(name string, create dirCreation) (int, error) {
	if !a.noOpenat2 {
		fd, err := unix.Openat2(a.root, name, &unix.OpenHow{
			Flags:   dirFlags,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case err == nil:
			return fd, nil
		case err == unix.ENOSYS || err == unix.EPERM: // old kernel, or seccomp
			a.noOpenat2 = true
		case err == unix.ENOENT && create == existingDirs:
			return -1, fmt.Errorf("directory %q: %w", name, os.ErrNotExist)
		}
		// Anything else (missing components to create, a symlink or file
		// in the way, EAGAIN): the walk creates, or says which component.
	}
	return a.walkDir(name, create)
}

// walkDir opens name one component at a time with O_NOFOLLOW, which is what
// openat2's RESOLVE_NO_SYMLINKS does in one call.
func (a *applier) walkDir(name string, create dirCreation) (int, error) {
	fd, err := unix.Openat(a.root, rootName, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("opening layer root: %w", err)
	}
	if name == rootName {
		return fd, nil
	}
	for comp := range strings.SplitSeq(name, "/") {
		if comp == "" || comp == "." || comp == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("directory %q: component %q: %w", name, comp, ErrInvalidName)
		}
		next, err := openat(fd, comp, dirFlags, 0)
		if err == unix.ENOENT && create == makeDirs {
			next, err = a.mkdirImplicit(fd, comp)
		}
		if err != nil {
			err = explainOpenDir(fd, comp, err)
			unix.Close(fd)
			return -1, fmt.Errorf("directory %q: %w", name, err)
		}
		unix.Close(fd)
		fd = next
	}
	return fd, nil
}

// mkdirImplicit makes a directory the layer uses without listing it. Its
// mode is implicitDirMode whatever the process umask, since a lower layer's
// directory modes are what every container using it sees.
func (a *applier) mkdirImplicit(dirfd int, comp string) (int, error) {
	if err := unix.Mkdirat(dirfd, comp, implicitDirMode); err != nil && err != unix.EEXIST {
		return -1, err
	}
	fd, err := openat(dirfd, comp, dirFlags, 0)
	if err != nil || (a.creator.umaskKnown && a.creator.umask&implicitDirMode == 0) {
		return fd, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Fchmod(fd, implicitDirMode|st.Mode&unix.S_ISGID); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// explainOpenDir turns the errno of a failed O_NOFOLLOW|O_DIRECTORY open into
// one that names the problem.
func explainOpenDir(dirfd int, comp string, err error) error {
	switch err {
	case unix.ENOENT:
		return fmt.Errorf("%q: %w", comp, os.ErrNotExist)
	case unix.ELOOP, unix.ENOTDIR:
		var st unix.Stat_t
		if unix.Fstatat(dirfd, comp, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return fmt.Errorf("%q is a symlink: %w", comp, ErrUnsafePath)
		}
		return fmt.Errorf("%q is not a directory: %w", comp, ErrUnsafePath)
	}
	return fmt.Errorf("opening %q: %w", comp, err)
}

func readDirInfo(fd int) (dirInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return dirInfo{}, err
	}
	info := dirInfo{gid: st.Gid, setgid: st.Mode&unix.S_ISGID != 0}
	_, err := unix.Fgetxattr(fd, "system.posix_acl_default", nil)
	switch err {
	case unix.ENODATA, unix.EOPNOTSUPP:
	default: // present, or unknown: either way modes can't be predicted
		info.defaultACL = true
	}
	return info, nil
}

const removeBatch = 1024

// removeAllAt removes name in dirfd and, if it is a directory, everything
// under it, never following symlinks.
func removeAllAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR {
		return fmt.Errorf("removing %q: %w", name, err)
	}
	// Each round lists from the start again, since removing entries while
	// reading a directory may make some filesystems skip others.
	for {
		fd, err := openat(dirfd, name, dirFlags, 0)
		if err != nil {
			return fmt.Errorf("opening %q to remove it: %w", name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		names, readErr := f.Readdirnames(removeBatch)
		var rmErr error
		for _, n := range names {
			if rmErr = removeAllAt(fd, n); rmErr != nil {
				break
			}
		}
		closeErr := f.Close()
		if rmErr != nil {
			return rmErr
		}
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return fmt.Errorf("listing %q: %w", name, readErr)
		}
		if closeErr != nil {
			return fmt.Errorf("listing %q: %w", name, closeErr)
		}
		if len(names) < removeBatch {
			break
		}
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil {
		return fmt.Errorf("removing directory %q: %w", name, err)
	}
	return nil
}

// openat is unix.Openat retried on EINTR, which open can return on some
// filesystems (FUSE, NFS) despite SA_RESTART.
func openat(dirfd int, name string, flags int, mode uint32) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, mode)
		if err != unix.EINTR {
			return fd, err
		}
	}
}
