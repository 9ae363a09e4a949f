package archive

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// whiteout hides target in lower layers: overlayfs reads a 0/0 character
// device as "deleted here".
func (a *applier) whiteout(target string) error {
	a.stats.Whiteouts++
	dir, base := splitName(target)
	parent, err := a.parentDir(dir, makeDirs)
	if err != nil {
		return err
	}
	err = unix.Mknodat(parent.fd, base, unix.S_IFCHR, 0)
	if err != unix.EEXIST {
		if err != nil {
			return fmt.Errorf("creating whiteout for %q: %w", target, err)
		}
		return nil
	}
	// This layer has its own target. A whiteout only hides lower layers
	// (OCI image spec), so the target stays; a directory additionally
	// must not show the lower one's contents, which is opacity.
	var st unix.Stat_t
	if err := unix.Fstatat(parent.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("inspecting whiteout target %q: %w", target, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return a.setDirXattrs(parent.fd, base, nil, true)
}

// opaque hides the lower layers' contents of directory dir (created if the
// layer does not list it).
func (a *applier) opaque(dir string) error {
	a.stats.Opaques++
	d, err := a.parentDir(dir, makeDirs)
	if err != nil {
		return err
	}
	if err := unix.Fsetxattr(d.fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking %q opaque: %w", dir, err)
	}
	return nil
}

// isWhiteout reports whether st is an overlayfs whiteout. Apply creates no
// other device nodes, so in the layer directory this means "from a whiteout".
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}
