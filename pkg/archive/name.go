package archive

import (
	"fmt"
	"path"
	"strings"
)

// rootName is how cleanName spells the layer root.
const rootName = "."

// cleanName maps a tar entry name (or hardlink target) to a path relative to
// the layer root, reading it as if the root were "/". A leading "/" is dropped
// (as GNU tar does), "." components vanish and "a/../b" becomes "b". A name
// whose ".." climbs above the root is refused rather than clamped: no
// well-formed layer has one, and clamping would quietly change which file an
// entry writes. This is lexical normalisation only; containment is enforced by
// the kernel when the path is opened (see openDir).
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name: %w", ErrInvalidName)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("name %q contains NUL: %w", name, ErrInvalidName)
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", fmt.Errorf("name %q leaves the layer root: %w", name, ErrInvalidName)
	}
	return p, nil
}

// splitName splits a cleaned, non-root name into its parent directory
// (rootName for top-level entries) and base name.
func splitName(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return rootName, p
	}
	return p[:i], p[i+1:]
}

// joinName is the inverse of splitName.
func joinName(dir, base string) string {
	if dir == rootName {
		return base
	}
	return dir + "/" + base
}

// depth orders names for the deferred directory-times pass: deeper first,
// the root last.
func depth(p string) int {
	if p == rootName {
		return -1
	}
	return strings.Count(p, "/")
}
