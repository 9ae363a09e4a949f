package archive

import (
	"archive/tar"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Every create below is an exclusive *at call on the parent's descriptor, so
// it can neither follow nor overwrite something in place: when the name is
// taken, clear removes what an earlier entry put there and the call is
// retried once, which is how a later tar entry replaces an earlier one.

func (a *applier) regular(name string, hdr *tar.Header, own owner, xattrs []xattr, tr io.Reader) error {
	dir, base := splitName(name)
	parent, err := a.parentDir(dir, makeDirs)
	if err != nil {
		return err
	}
	const flags = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := openat(parent.fd, base, flags, own.mode&modePerm)
	if err == unix.EEXIST {
		if err = a.clear(parent, name, base); err == nil {
			fd, err = openat(parent.fd, base, flags, own.mode&modePerm)
		}
	}
	if err != nil {
		return fmt.Errorf("creating file: %w", err)
	}
	err = a.fillFile(fd, parent, own, xattrs, hdr, tr)
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("closing file: %w", cerr)
	}
	return err
}

func (a *applier) fillFile(fd int, parent *dirHandle, own owner, xattrs []xattr, hdr *tar.Header, tr io.Reader) error {
	if err := a.copyData(fd, tr, hdr.Size); err != nil {
		return err
	}
	// Order matters: writing drops security.capability, chown drops
	// setuid/setgid, and every step but the last changes ctime only.
	chowned := needChown(a.creator, parent.info, own)
	if chowned {
		if err := unix.Fchown(fd, own.uid, own.gid); err != nil {
			return fmt.Errorf("chown %d:%d: %w", own.uid, own.gid, err)
		}
	}
	if needChmod(a.creator, parent.info, own, false, chowned) {
		if err := unix.Fchmod(fd, own.mode); err != nil {
			return fmt.Errorf("chmod %#o: %w", own.mode, err)
		}
	}
	if err := fsetxattrs(fd, xattrs); err != nil {
		return err
	}
	ts := timespecs(hdr)
	if err := futimens(fd, &ts); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// copyData writes the next size bytes of tr to fd through the shared buffer.
func (a *applier) copyData(fd int, tr io.Reader, size int64) error {
	for done := int64(0); done < size; {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		chunk := a.buf[:min(int64(len(a.buf)), size-done)]
		n, err := io.ReadFull(tr, chunk)
		if werr := writeAll(fd, chunk[:n]); werr != nil {
			return fmt.Errorf("writing file: %w", werr)
		}
		done += int64(n)
		a.stats.Bytes += int64(n)
		if err != nil {
			return fmt.Errorf("reading file data (%d of %d bytes): %w", done, size, err)
		}
	}
	return nil
}

func writeAll(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		p = p[n:]
	}
	return nil
}

func (a *applier) directory(name string, hdr *tar.Header, own owner, xattrs []xattr) error {
	dir, base := splitName(name)
	parent, err := a.parentDir(dir, makeDirs)
	if err != nil {
		return err
	}
	created, opaque := true, false
	var st unix.Stat_t
	err = unix.Mkdirat(parent.fd, base, own.mode&modePerm)
	if err == unix.EEXIST {
		if err = unix.Fstatat(parent.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("inspecting existing entry: %w", err)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			created = false // merge, as tar does
		default:
			// A whiteout of this name earlier in the layer hid the lower
			// directory; overlayfs says that of a new one by opacity.
			opaque = isWhiteout(&st)
			if err = a.clear(parent, name, base); err == nil {
				err = unix.Mkdirat(parent.fd, base, own.mode&modePerm)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("creating directory: %w", err)
	}

	var chown, chmod bool
	if created {
		chown = needChown(a.creator, parent.info, own)
		chmod = needChmod(a.creator, parent.info, own, true, chown)
	} else {
		chown = int64(st.Uid) != int64(own.uid) || int64(st.Gid) != int64(own.gid)
		chmod = st.Mode&modeMask != own.mode
	}
	if chown {
		if err := unix.Fchownat(parent.fd, base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", own.uid, own.gid, err)
		}
	}
	if chmod {
		// Not a symlink: just made, or seen as a directory above.
		if err := unix.Fchmodat(parent.fd, base, own.mode, 0); err != nil {
			return fmt.Errorf("chmod %#o: %w", own.mode, err)
		}
	}
	if len(xattrs) > 0 || opaque {
		if err := a.setDirXattrs(parent.fd, base, xattrs, opaque); err != nil {
			return err
		}
	}
	a.recordDirTimes(name, timespecs(hdr))
	return nil
}

// rootDir applies a directory entry for the layer root ("./") to dir itself.
func (a *applier) rootDir(hdr *tar.Header, own owner, xattrs []xattr) error {
	a.closeCur() // it may be the root, whose cached dirInfo is about to change
	var st unix.Stat_t
	if err := unix.Fstat(a.root, &st); err != nil {
		return fmt.Errorf("inspecting layer root: %w", err)
	}
	if int64(st.Uid) != int64(own.uid) || int64(st.Gid) != int64(own.gid) {
		if err := unix.Fchown(a.root, own.uid, own.gid); err != nil {
			return fmt.Errorf("chown layer root %d:%d: %w", own.uid, own.gid, err)
		}
	}
	if st.Mode&modeMask != own.mode {
		if err := unix.Fchmod(a.root, own.mode); err != nil {
			return fmt.Errorf("chmod layer root %#o: %w", own.mode, err)
		}
	}
	if err := fsetxattrs(a.root, xattrs); err != nil {
		return err
	}
	a.recordDirTimes(rootName, timespecs(hdr))
	return nil
}

func (a *applier) setDirXattrs(parentfd int, base string, xattrs []xattr, opaque bool) error {
	fd, err := openat(parentfd, base, dirFlags, 0)
	if err != nil {
		return fmt.Errorf("opening directory for xattrs: %w", err)
	}
	defer unix.Close(fd)
	if opaque {
		if err := unix.Fsetxattr(fd, overlayOpaqueXattr, []byte("y"), 0); err != nil {
			return fmt.Errorf("marking directory opaque: %w", err)
		}
	}
	return fsetxattrs(fd, xattrs)
}

func (a *applier) symlink(name string, hdr *tar.Header, own owner, xattrs []xattr) error {
	dir, base := splitName(name)
	parent, err := a.parentDir(dir, makeDirs)
	if err != nil {
		return err
	}
	err = unix.Symlinkat(hdr.Linkname, parent.fd, base)
	if err == unix.EEXIST {
		if err = a.clear(parent, name, base); err == nil {
			err = unix.Symlinkat(hdr.Linkname, parent.fd, base)
		}
	}
	if err != nil {
		return fmt.Errorf("creating symlink to %q: %w", hdr.Linkname, err)
	}
	if needChown(a.creator, parent.info, own) {
		if err := unix.Fchownat(parent.fd, base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %d:%d: %w", own.uid, own.gid, err)
		}
	}
	if err := lsetxattrsAt(parent.fd, base, xattrs); err != nil {
		return err
	}
	ts := timespecs(hdr)
	if err := unix.UtimesNanoAt(parent.fd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

// hardlink links name to an entry extracted earlier from this layer. The
// link shares the target's inode, so the header's own metadata is ignored,
// as tar does.
func (a *applier) hardlink(name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w: %w", err, ErrLinkTarget)
	}
	if _, ok := a.skipped[target]; ok {
		a.skip(hdr.Name, name, fmt.Sprintf("hardlink to %q, which was skipped", hdr.Linkname))
		return nil
	}
	if target == rootName {
		return fmt.Errorf("hardlink to the layer root: %w", ErrLinkTarget)
	}
	tdir, tbase := splitName(target)
	tfd, err := a.openDir(tdir, existingDirs)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w: %w", hdr.Linkname, err, ErrLinkTarget)
	}
	defer unix.Close(tfd)
	var tst unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &tst, unix.AT_SYMLINK_NOFOLLOW); err == unix.ENOENT {
		return fmt.Errorf("hardlink target %q is not an earlier entry of this layer: %w", hdr.Linkname, ErrLinkTarget)
	} else if err != nil {
		return fmt.Errorf("hardlink target %q: %w: %w", hdr.Linkname, err, ErrLinkTarget)
	}
	if m := tst.Mode & unix.S_IFMT; (m != unix.S_IFREG && m != unix.S_IFLNK) || isWhiteout(&tst) {
		return fmt.Errorf("hardlink target %q is not a file or symlink of this layer (mode %#o): %w", hdr.Linkname, tst.Mode, ErrLinkTarget)
	}

	dir, base := splitName(name)
	parent, err := a.parentDir(dir, makeDirs)
	if err != nil {
		return err
	}
	err = unix.Linkat(tfd, tbase, parent.fd, base, 0)
	if err == unix.EEXIST {
		var st unix.Stat_t
		if unix.Fstatat(parent.fd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Dev == tst.Dev && st.Ino == tst.Ino {
			return nil // already that inode (a link to itself, or a repeated entry)
		}
		if err = a.clear(parent, name, base); err == nil {
			err = unix.Linkat(tfd, tbase, parent.fd, base, 0)
		}
	}
	if err != nil {
		return fmt.Errorf("linking to %q: %w", hdr.Linkname, err)
	}
	return nil
}

// clear removes what an earlier entry put at base in parent (name is its
// layer path), a whole tree if it is a directory.
func (a *applier) clear(parent *dirHandle, name, base string) error {
	err := unix.Unlinkat(parent.fd, base, 0)
	switch err {
	case nil, unix.ENOENT:
		return nil
	case unix.EISDIR:
		if err := removeAllAt(parent.fd, base); err != nil {
			return fmt.Errorf("replacing directory: %w", err)
		}
		a.dirRemoved(name)
		return nil
	}
	return fmt.Errorf("replacing existing entry: %w", err)
}
