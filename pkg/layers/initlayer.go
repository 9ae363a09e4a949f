package layers

import (
	"fmt"
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
	if err := writeInitFiles(next, files); err != nil {
		os.RemoveAll(next)
		return err
	}
	if err := unix.Renameat2(unix.AT_FDCWD, next, unix.AT_FDCWD, diff, unix.RENAME_EXCHANGE); err != nil {
		os.RemoveAll(next)
		return fmt.Errorf("swap in init layer: %w", err)
	}
	return os.RemoveAll(next) // now the old content
}

// writeInitFiles writes files under dir through an os.Root, so no path can
// leave it, not even through a symlink an earlier file created.
func writeInitFiles(dir string, files []InitFile) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, f := range files {
		if err := f.validate(); err != nil {
			return err
		}
		if parent := filepath.Dir(f.Path); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return fmt.Errorf("init file %q: %w", f.Path, err)
			}
		}
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := root.WriteFile(f.Path, f.Data, mode); err != nil {
			return fmt.Errorf("init file %q: %w", f.Path, err)
		}
		// WriteFile's mode is filtered by the umask and not applied to an
		// existing file; the spec's mode must hold exactly.
		if err := root.Chmod(f.Path, mode); err != nil {
			return fmt.Errorf("init file %q: %w", f.Path, err)
		}
	}
	return nil
}
