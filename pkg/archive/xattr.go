package archive

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

const (
	paxSchilyXattr     = "SCHILY.xattr."
	paxLibarchiveXattr = "LIBARCHIVE.xattr." // name URL-escaped, value base64
)

type xattr struct {
	name, value string
}

// entryXattrs returns the extended attributes a tar entry asks for, sorted by
// name. Attributes in overlayfs's namespaces are refused: they would let a
// layer forge whiteouts, opaque directories, redirects or metacopy files in
// the merged view. "user.overlay." is refused too because overlayfs mounted
// with userxattr reads it instead of "trusted.overlay.". LIBARCHIVE.xattr
// records are only checked: libarchive writes the SCHILY form alongside them.
func entryXattrs(records map[string]string) ([]xattr, error) {
	var out []xattr
	for k, v := range records {
		if name, ok := strings.CutPrefix(k, paxSchilyXattr); ok {
			if isOverlayXattr(name) {
				return nil, fmt.Errorf("xattr %q: %w", name, ErrOverlayXattr)
			}
			out = append(out, xattr{name: name, value: v})
			continue
		}
		if escaped, ok := strings.CutPrefix(k, paxLibarchiveXattr); ok {
			name, err := url.PathUnescape(escaped)
			if err != nil {
				return nil, fmt.Errorf("PAX record %q: bad xattr name escaping: %w", k, ErrInvalidHeader)
			}
			if isOverlayXattr(name) {
				return nil, fmt.Errorf("xattr %q: %w", name, ErrOverlayXattr)
			}
		}
	}
	slices.SortFunc(out, func(a, b xattr) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}
