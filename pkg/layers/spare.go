package layers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// A removed volume's directories are emptied and kept as a spare for the
// next new volume. Creating a directory or file allocates an inode, and
// ext4 makes allocation slow exactly where pods churn: it passes over
// inodes freed in the last seconds (minutes while their table block is
// dirty), one buffer lookup each. A spare turns the volume's eleven
// creations, and later eleven frees, into writes of files that exist.

const (
	spareDir = ".spare"

	defaultSpares = 32
)

// skeleton is a volume's pair of directories outside the store's view:
// vol with diff/, work/, merged/ and init with diff/. A spare also has the
// metadata files and init files of its last volume, and keeps the short
// ids and init file paths they hold (initFiles nil: not known).
type skeleton struct {
	vol, init         string
	volLink, initLink string
	initFiles         []string
}

// skeleton returns directories for a new volume: a spare when one is
// left, else new, empty ones in staging.
func (s *Store) skeleton(name string) (skeleton, error) {
	for {
		sk, ok := s.popSpare()
		if !ok {
			break
		}
		// Another process's Open empties the spare directory; ours are
		// then only names.
		if _, err := os.Lstat(sk.vol); err == nil {
			if _, err := os.Lstat(sk.init); err == nil {
				return sk, nil
			}
		}
	}
	init, err := s.stageDir(name+initSuffix, diffName)
	if err != nil {
		return skeleton{}, err
	}
	vol, err := s.stageDir(name, diffName, workName, mergedName)
	if err != nil {
		return skeleton{}, errors.Join(err, os.RemoveAll(init))
	}
	return skeleton{vol: vol, init: init, initFiles: []string{}}, nil
}

// discard deletes what is left of a skeleton; after it was renamed into
// place, nothing is. What it cannot delete is in staging or spare, which
// repair empties.
func (sk skeleton) discard() error {
	return errors.Join(os.RemoveAll(sk.vol), os.RemoveAll(sk.init))
}

// retire takes the volume directory name and its init layer, which holds
// initFiles (nil: not known), out of the store, the volume first as
// creation puts it last, and drops their short links. The emptied
// directories become a spare when there is room.
func (s *Store) retire(ctx context.Context, name string, vol *Volume) error {
	initFiles := vol.InitFiles
	volLink, _ := readLink(s.path(name))
	initLink, _ := readLink(s.path(name + initSuffix))
	// A limited volume's directories carry its project id or image: not
	// worth scrubbing for reuse.
	if vol.Limit != nil || !s.roomForSpare() {
		for _, dir := range []string{name, name + initSuffix} {
			if err := s.removeAll(ctx, s.path(dir)); err != nil {
				return err
			}
		}
		s.dropLinks(ctx, volLink, initLink)
		return nil
	}
	id, err := newLinkID()
	if err != nil {
		return err
	}
	sk := skeleton{vol: s.path(spareDir, id), init: s.path(spareDir, id+initSuffix), volLink: volLink, initLink: initLink, initFiles: initFiles}
	if err := os.Rename(s.path(name), sk.vol); err != nil {
		return fmt.Errorf("remove volume directory %s: %w", name, err)
	}
	// The volume is gone; what follows only decides whether its
	// directories are worth keeping.
	defer s.dropLinks(ctx, volLink, initLink)
	err = os.Rename(s.path(name+initSuffix), sk.init)
	if err == nil {
		err = sk.scrub()
	}
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Not keeping a removed volume's directories for reuse", "dir", name, "err", err)
		for _, dir := range []string{sk.vol, sk.init, s.path(name + initSuffix)} {
			if err := s.removeAll(ctx, dir); err != nil {
				return err
			}
		}
		return nil
	}
	s.pushSpare(ctx, sk)
	return nil
}

// dropLinks removes the l/ links of short ids no directory has any more.
// A link it cannot remove leads nowhere, and repair drops it.
func (s *Store) dropLinks(ctx context.Context, ids ...string) {
	for _, id := range ids {
		if id == "" {
			continue
		}
		if err := os.Remove(s.path(linkDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			klog.FromContext(ctx).Error(err, "Leaving a removed directory's short link for the next start", "id", id)
		}
	}
}

// scrub empties the skeleton's upper and work dirs and gives its layer
// roots back the mode, owner and extended attributes a new directory has:
// the upper's root takes the volume root's chmod and chown, and overlayfs
// marks it. The init layer was never writable through the mount.
func (sk skeleton) scrub() error {
	merged := filepath.Join(sk.vol, mergedName)
	empty, err := isEmptyDir(merged)
	if err != nil {
		return err
	}
	if !empty {
		return fmt.Errorf("%s is not empty", merged)
	}
	if err := os.RemoveAll(filepath.Join(sk.init, newDiffName)); err != nil {
		return err
	}
	for _, dir := range []string{filepath.Join(sk.vol, diffName), filepath.Join(sk.vol, workName)} {
		if err := emptyDir(dir); err != nil {
			return err
		}
	}
	// The init layer keeps its files for writeInitFiles to write over.
	for _, dir := range []string{filepath.Join(sk.vol, diffName), filepath.Join(sk.vol, workName), filepath.Join(sk.init, diffName)} {
		if err := resetDir(dir); err != nil {
			return fmt.Errorf("reset %s: %w", dir, err)
		}
	}
	return nil
}

// resetDir makes dir look as os.Mkdir(dir, 0o755) by this process left it.
func resetDir(dir string) error {
	if err := unix.Lchown(dir, os.Geteuid(), os.Getegid()); err != nil {
		return err
	}
	if err := unix.Chmod(dir, 0o755); err != nil {
		return err
	}
	names, err := listXattrs(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := unix.Lremovexattr(dir, n); err != nil && !errors.Is(err, unix.ENODATA) {
			return err
		}
	}
	return nil
}

func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for start, i := 0, 0; i < n; i++ {
		if buf[i] == 0 {
			if i > start {
				names = append(names, string(buf[start:i]))
			}
			start = i + 1
		}
	}
	return names, nil
}

func (s *Store) roomForSpare() bool {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	return len(s.spares) < s.opts.Spares
}

func (s *Store) pushSpare(ctx context.Context, sk skeleton) {
	s.spareMu.Lock()
	full := len(s.spares) >= s.opts.Spares
	if !full {
		s.spares = append(s.spares, sk)
	}
	s.spareMu.Unlock()
	if full {
		if err := sk.discard(); err != nil {
			klog.FromContext(ctx).Error(err, "Leaving a removed volume's directories for the next start")
		}
	}
}

func (s *Store) popSpare() (skeleton, bool) {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	n := len(s.spares)
	if n == 0 {
		return skeleton{}, false
	}
	sk := s.spares[n-1]
	s.spares = s.spares[:n-1]
	return sk, true
}
