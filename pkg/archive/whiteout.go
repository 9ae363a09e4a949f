package archive

import (
	"fmt"
	"strings"
)

const (
	whiteoutPrefix     = ".wh."
	whiteoutMetaPrefix = ".wh..wh."     // reserved by aufs for its own bookkeeping
	opaqueMarker       = ".wh..wh..opq" // "hide everything below in lower layers"

	// overlayOpaqueXattr is how overlayfs spells opaqueMarker.
	overlayOpaqueXattr = "trusted.overlay.opaque"
)

type entryKind int

const (
	kindPlain    entryKind = iota // extract as the tar type says
	kindWhiteout                  // hide target in lower layers
	kindOpaque                    // hide target's lower-layer contents
	kindAufsMeta                  // aufs bookkeeping (.wh..wh.plnk etc.): skip
)

// classify tells whiteout markers from plain entries. name is cleaned and is
// not the root. For kindWhiteout and kindOpaque, target is the path the
// marker applies to.
func classify(name string) (kind entryKind, target string, err error) {
	dir, base := splitName(name)
	if base == opaqueMarker {
		return kindOpaque, dir, nil
	}
	// aufs metadata directories (.wh..wh.plnk, .wh..wh.orph) may have
	// children, so any component marks the entry.
	if strings.HasPrefix(name, whiteoutMetaPrefix) || strings.Contains(name, "/"+whiteoutMetaPrefix) {
		return kindAufsMeta, "", nil
	}
	hidden, ok := strings.CutPrefix(base, whiteoutPrefix)
	if !ok {
		return kindPlain, "", nil
	}
	if hidden == "" || hidden == "." || hidden == ".." {
		return 0, "", fmt.Errorf("whiteout %q names no file: %w", base, ErrInvalidName)
	}
	return kindWhiteout, joinName(dir, hidden), nil
}
