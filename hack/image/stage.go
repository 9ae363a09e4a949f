package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stage writes the tools layer of o.StageArch as a directory tree under
// o.Stage, for the Dockerfile, which copies the tree into its image: the
// libraries are found by the same code for both images. Files and
// directories get o.Created as their time, so the copy does not depend on
// when it was made.
func stage(o Options) error {
	if len(o.Binaries) > 0 {
		return fmt.Errorf("--stage writes the tools only: give no --binary")
	}
	if o.StageArch == "" {
		return fmt.Errorf("--stage needs --arch, the GOARCH of the image the tools are for")
	}
	if o.Tools.empty() {
		return fmt.Errorf("--stage without --tool, --tool-file or --tool-link: nothing to write")
	}
	files, err := toolFiles(o.Tools, o.StageArch)
	if err != nil {
		return err
	}
	if err := os.Mkdir(o.Stage, 0o755); err != nil {
		return fmt.Errorf("stage directory: %w (it must not exist yet)", err)
	}
	var dirs []string
	seen := map[string]bool{}
	for _, f := range files {
		for _, d := range parents(f.Path) {
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
		if err := writeStaged(o.Stage, f, o.Created); err != nil {
			return errors.Join(err, os.RemoveAll(o.Stage))
		}
	}
	// Directories last, innermost first: writing into one changes its time.
	dirs = append(dirs, ".")
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(filepath.Join(o.Stage, filepath.FromSlash(dirs[i])), o.Created, o.Created); err != nil {
			return errors.Join(err, os.RemoveAll(o.Stage))
		}
	}
	return nil
}

// writeStaged writes one file or symlink below dir.
func writeStaged(dir string, f file, mtime time.Time) error {
	p := filepath.Join(dir, filepath.FromSlash(f.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if f.Link != "" {
		return os.Symlink(f.Link, p)
	}
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, os.FileMode(f.Mode))
	if err != nil {
		return err
	}
	_, err = w.Write(f.Data)
	if err = errors.Join(err, w.Close()); err != nil {
		return fmt.Errorf("stage %s: %w", f.Path, err)
	}
	// The umask may have taken bits away.
	if err := os.Chmod(p, os.FileMode(f.Mode)); err != nil {
		return err
	}
	return os.Chtimes(p, mtime, mtime)
}
