// Package atomicfile replaces small files so that a reader, or a process
// restarted after a crash, finds the old content or the new, never a mix.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
)

// TempGlob matches the temporary files WriteFiles leaves in a directory
// when a crash interrupts it.
const TempGlob = ".tmp-*"

// Durability says whether a write must survive a power loss.
type Durability bool

const (
	// Volatile writes are atomic, not synced: for what cannot outlive a
	// reboot anyway, such as an inline volume's metadata.
	Volatile Durability = false
	// Durable writes are synced before they take effect.
	Durable Durability = true
)

// WriteFiles writes each file through a temporary file in its directory
// and moves it into place with Replace. A Durable write syncs the
// temporary files first, concurrently, so the journal commits them
// together: one disk flush rather than one per file. Making the moves themselves
// durable (SyncDir) is the caller's to decide. Every temporary file is
// closed, its close checked, before any is moved into place. A temporary
// file that cannot be removed afterwards is an error too, though the files
// may be in place by then; it matches TempGlob.
func WriteFiles(files map[string][]byte, perm os.FileMode, durability Durability) (err error) {
	tmps := make(map[string]*os.File, len(files))
	closed := false
	defer func() {
		for _, f := range tmps {
			if !closed {
				// Only on an error path, which returns that error: the
				// file's content is thrown away.
				_ = f.Close()
			}
			// After Replace: the old content, or nothing.
			if rerr := os.Remove(f.Name()); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("remove temporary file: %w", rerr))
			}
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
	if durability == Durable {
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
	// Close all before replacing any, so a failed close leaves every file
	// as it was.
	closed = true
	var cerrs []error
	for path, f := range tmps {
		if err := f.Close(); err != nil {
			cerrs = append(cerrs, fmt.Errorf("write %s: %w", path, err))
		}
	}
	if err := errors.Join(cerrs...); err != nil {
		return err
	}
	for path, f := range tmps {
		if err := Replace(f.Name(), path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return nil
}

// SyncDir makes the creations, renames and removals in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
