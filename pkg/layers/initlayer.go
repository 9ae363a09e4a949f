package layers

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const newDiffName = "diff.new"

// InitFile is one file of a volume's init layer.
type InitFile struct {
	// Path is relative to the volume root, slash-separated, without "..".
	Path string
	// Mode holds the permission bits; zero means 0644.
	Mode os.FileMode
	Data []byte
}

func (f InitFile) validate() error {
	p := f.Path
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || path.Clean(p) != p ||
		p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("%w: init file path %q must be a clean relative path inside the volume", ErrInvalid, f.Path)
	}
	if f.Mode&^os.ModePerm != 0 {
		return fmt.Errorf("%w: init file %q: mode %v has more than permission bits", ErrInvalid, f.Path, f.Mode)
	}
	return nil
}

// writeInitLayer fills dir/diff with files. The new content is built beside
// the old and swapped in with one renameat2(RENAME_EXCHANGE), so the init
// layer is never half-written, and its l/ link (to dir/diff) never changes.
func (s *Store) writeInitLayer(dir string, files []InitFile) error {
	diff := s.path(dir, diffName)
	if len(files) == 0 {
		if empty, err := isEmptyDir(diff); err != nil || empty {
			return err
		}
	}
	next := s.path(dir, newDiffName)
	if err := os.RemoveAll(next); err != nil {
		return err
	}
	if err := os.Mkdir(next, 0o755); err != nil {
		return err
	}
	if err := writeInitFiles(next, files, nil); err != nil {
		return errors.Join(err, os.RemoveAll(next))
	}
	if err := unix.Renameat2(unix.AT_FDCWD, next, unix.AT_FDCWD, diff, unix.RENAME_EXCHANGE); err != nil {
		return errors.Join(fmt.Errorf("swap in init layer: %w", err), os.RemoveAll(next))
	}
	return os.RemoveAll(next) // now the old content
}

// writeInitFiles writes files under dir through an os.Root, so no path can
// leave it, not even through a symlink an earlier file created. dir may
// hold an earlier volume's init files (a spare skeleton's), whose paths
// are had, nil if unknown: what files do not name is removed, and what
// they name is written over in place, which spares the allocation of new
// inodes (see spare.go).
func writeInitFiles(dir string, files []InitFile, had []string) (err error) {
	for _, f := range files {
		if err := f.validate(); err != nil {
			return err
		}
	}
	shape := initTreeShape(files)
	// existing holds the directories of an earlier tree that needs no
	// pruning: they are there still.
	var existing map[string]bool
	if had != nil && fitsShape(had, shape) {
		existing = initTreeShape(pathsOnly(had))
		if overwriteInPlace(dir, files, existing) {
			return nil
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, root.Close()) }()
	if existing == nil {
		if err := pruneInitTree(root, ".", shape); err != nil {
			return err
		}
	}
	for _, f := range files {
		if parent := filepath.Dir(f.Path); parent != "." && !existing[parent] {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("init file %q: %w", f.Path, err)
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := overwriteInRoot(root, f.Path, f.Data, mode); err != nil {
			return fmt.Errorf("init file %q: %w", f.Path, err)
		}
	}
	return nil
}

// overwriteInPlace writes files over an earlier tree that has every
// directory they need (existing), as a spare's usually has, and reports
// whether it did. It opens each file beneath dir with openat2(2), which,
// as os.Root, lets no path leave dir, and refuses any symlink on the way
// (the store never writes one there); unlike an os.File, a raw descriptor
// costs no poller registration. Anything else (an older kernel, a tree
// not as expected) leaves the work to the os.Root path, which makes
// whatever this wrote right.
func overwriteInPlace(dir string, files []InitFile, existing map[string]bool) bool {
	for _, f := range files {
		if parent := path.Dir(f.Path); parent != "." && !existing[parent] {
			return false
		}
	}
	dirfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dirfd)
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if overwriteBeneath(dirfd, f.Path, f.Data, mode) != nil {
			return false
		}
	}
	return true
}

// overwriteBeneath is overwriteInRoot for the file name beneath dirfd.
func overwriteBeneath(dirfd int, name string, data []byte, mode os.FileMode) error {
	fd, err := unix.Openat2(dirfd, name, &unix.OpenHow{
		Flags:   unix.O_RDWR | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    uint64(mode.Perm()),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err != nil {
		return err
	}
	same, err := holds(fd, data)
	for off := 0; err == nil && !same && off < len(data); {
		var n int
		if n, err = unix.Pwrite(fd, data[off:], int64(off)); err == nil && n == 0 {
			err = io.ErrShortWrite
		}
		off += n
	}
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstat(fd, &st)
	}
	switch {
	case err != nil:
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		err = fmt.Errorf("%s is not a regular file", name)
	case !same && st.Size > int64(len(data)):
		err = unix.Ftruncate(fd, int64(len(data)))
	}
	if err == nil && os.FileMode(st.Mode).Perm() != mode.Perm() {
		err = unix.Fchmod(fd, uint32(mode.Perm()))
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

func pathsOnly(paths []string) []InitFile {
	files := make([]InitFile, len(paths))
	for i, p := range paths {
		files[i] = InitFile{Path: p}
	}
	return files
}

// initTreeShape maps every path the files need to whether it is a
// directory.
func initTreeShape(files []InitFile) map[string]bool {
	shape := map[string]bool{}
	for _, f := range files {
		shape[f.Path] = false
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			shape[d] = true
		}
	}
	return shape
}

// fitsShape reports whether a tree of the files at paths is part of shape,
// every file a file there and every directory a directory: then nothing of
// it needs removing.
func fitsShape(paths []string, shape map[string]bool) bool {
	for _, p := range paths {
		if isDir, ok := shape[p]; !ok || isDir {
			return false
		}
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if !shape[d] {
				return false
			}
		}
	}
	return true
}

// pruneInitTree removes under dir what shape has no place for, or has as
// the other kind. The tree is one the store wrote: no symlinks to follow.
func pruneInitTree(root *os.Root, dir string, shape map[string]bool) error {
	d, err := root.Open(dir)
	if err != nil {
		return err
	}
	entries, err := d.ReadDir(-1)
	if err := errors.Join(err, d.Close()); err != nil {
		return err
	}
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		isDir, wanted := shape[p]
		switch {
		case wanted && isDir && e.IsDir():
			if err := pruneInitTree(root, p, shape); err != nil {
				return err
			}
		case wanted && !isDir && e.Type().IsRegular():
		default:
			if err := root.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// overwriteInRoot writes data over the file at name, as overwriteFile
// does, and sets its mode exactly: the umask filters a new file's, and an
// existing file keeps its own.
func overwriteInRoot(root *os.Root, name string, data []byte, mode os.FileMode) error {
	f, err := root.OpenFile(name, os.O_RDWR|os.O_CREATE, mode)
	if err != nil {
		return err
	}
	fd := int(f.Fd())
	same, err := holds(fd, data)
	if err == nil && !same {
		_, err = f.WriteAt(data, 0)
	}
	if err == nil && !same {
		err = truncateTo(fd, int64(len(data)))
	}
	var st os.FileInfo
	if err == nil {
		st, err = f.Stat()
	}
	if err == nil && st.Mode().Perm() != mode {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
