// Package atomicfile replaces small files so that a reader, or a process
// restarted after a crash, finds the old content or the new, never a mix.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// TempGlob matches the temporary files WriteFiles leaves in a directory
// when a crash interrupts it.
const TempGlob = ".tmp-*"

// WriteFiles writes each file through a temporary file in its directory
// and moves it into place with Replace. With durable the temporary files
// are synced first, concurrently, so the journal commits them together:
// one disk flush rather than one per file. Making the moves themselves
// durable (SyncDir) is the caller's to decide.
func WriteFiles(files map[string][]byte, perm os.FileMode, durable bool) error {
	tmps := make(map[string]*os.File, len(files))
	defer func() {
		for _, f := range tmps {
			f.Close()
			os.Remove(f.Name()) // after Replace: the old content, or nothing
		}
	}()
	for path, data := range files {
		f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		tmps[path] = f
		if _, err := f.Write(data); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Chmod(perm); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if durable {
		var g errgroup.Group
		for path, f := range tmps {
			g.Go(func() error {
				if err := f.Sync(); err != nil {
					return fmt.Errorf("sync %s: %w", path, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	for path, f := range tmps {
		if err := Replace(f.Name(), path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// Replace moves tmp to path. An existing file is exchanged with tmp rather
// than renamed over, leaving its old content under tmp's name for the
// caller to delete: ext4 writes a file renamed over another out to disk at
// once (auto_da_alloc), which would put a disk write into every unsynced
// replacement.
func Replace(tmp, path string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) { // nothing to exchange, or no support
		return os.Rename(tmp, path)
	}
	return err
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
