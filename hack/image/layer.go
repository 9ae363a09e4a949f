package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// file is one regular file, or with Link one symlink, of a layer.
type file struct {
	Path string // absolute, clean
	Mode int64
	Data []byte
	// Link, when set, makes the entry a symlink to it (Mode and Data unused).
	Link string
}

// rootfsTar returns the tar stream of files and of the directories above
// them, parents first. Owners are root, every time is mtime: the stream
// depends on nothing but its arguments.
func rootfsTar(files []file, mtime time.Time) ([]byte, error) {
	sorted := append([]file(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for i, f := range sorted {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("layer file %q: want an absolute, clean path below /", f.Path)
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return nil, fmt.Errorf("layer file %q is given twice", f.Path)
		}
		for _, d := range parents(f.Path) {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(header(tar.TypeDir, d+"/", 0o755, 0, mtime)); err != nil {
				return nil, fmt.Errorf("layer directory %s: %w", d, err)
			}
		}
		if f.Link != "" {
			h := header(tar.TypeSymlink, f.Path[1:], 0o777, 0, mtime)
			h.Linkname = f.Link
			if err := tw.WriteHeader(h); err != nil {
				return nil, fmt.Errorf("layer symlink %s: %w", f.Path, err)
			}
			continue
		}
		if err := tw.WriteHeader(header(tar.TypeReg, f.Path[1:], f.Mode, int64(len(f.Data)), mtime)); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// parents returns the directories above p, outermost first, relative to /:
// /etc/ssl/x gives etc, etc/ssl.
func parents(p string) []string {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	var out []string
	for i := 1; i < len(parts); i++ {
		out = append(out, strings.Join(parts[:i], "/"))
	}
	return out
}

func header(typ byte, name string, mode, size int64, mtime time.Time) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		Size:     size,
		ModTime:  mtime,
		Uname:    "root",
		Gname:    "root",
	}
}
