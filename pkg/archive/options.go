package archive

import (
	"errors"
	"fmt"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxEntries   = 1 << 20
	DefaultMaxFileSize  = 64 << 30
	DefaultMaxTotalSize = 1 << 40
)

// Errors Apply wraps, so callers can tell a hostile or broken layer (which
// retrying will not fix) from an I/O failure.
var (
	// ErrInvalidName: an entry or hardlink name is empty, holds NUL, climbs
	// out of the layer with "..", or is a whiteout of "." or "..".
	ErrInvalidName = errors.New("invalid entry name")
	// ErrInvalidHeader: a header field other than the name is unusable
	// (owner out of range, non-directory entry for the layer root).
	ErrInvalidHeader = errors.New("invalid entry header")
	// ErrUnsafePath: an entry's parent path goes through a symlink or a
	// non-directory. Entries are never written through symlinks.
	ErrUnsafePath = errors.New("path goes through a symlink or non-directory")
	// ErrLinkTarget: a hardlink names a target that is not a file or symlink
	// already extracted from this layer.
	ErrLinkTarget = errors.New("invalid hardlink target")
	// ErrOverlayXattr: an entry carries an overlayfs xattr, which would let
	// the layer forge whiteouts, redirects or metacopy in the merged view.
	ErrOverlayXattr = errors.New("layer carries an overlayfs xattr")
	// ErrLimit: the layer exceeds one of the Options limits.
	ErrLimit = errors.New("layer exceeds a limit")
)

// Options bounds what Apply accepts. The zero value is usable.
type Options struct {
	MaxEntries   int   // 0 = DefaultMaxEntries
	MaxFileSize  int64 // 0 = DefaultMaxFileSize: entries declaring more are refused
	MaxTotalSize int64 // 0 = DefaultMaxTotalSize: sum of entry data sizes, and bytes after the tar end
	// Warn is told about each entry skipped on purpose (device nodes other
	// than whiteouts, fifos, aufs metadata, unknown types), with a reason.
	// May be nil.
	Warn func(name, reason string)

	forceWalk bool // tests: resolve paths as on kernels without openat2
}

// Stats describes what Apply did.
type Stats struct {
	Entries   int   // tar entries read, including whiteouts and skipped ones
	Whiteouts int   // whiteout entries (".wh.NAME" or 0/0 character devices)
	Opaques   int   // opaque directory markers (".wh..wh..opq")
	Skipped   int   // entries not extracted on purpose (each reported to Warn)
	Bytes     int64 // regular file content written
}

// WithDefaults returns o with every zero limit replaced by its default, the
// limits Apply enforces; an error if a limit is negative.
func (o Options) WithDefaults() (Options, error) { return o.withDefaults() }

func (o Options) withDefaults() (Options, error) {
	if o.MaxEntries < 0 || o.MaxFileSize < 0 || o.MaxTotalSize < 0 {
		return o, fmt.Errorf("archive: negative limit in options (MaxEntries %d, MaxFileSize %d, MaxTotalSize %d)",
			o.MaxEntries, o.MaxFileSize, o.MaxTotalSize)
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxFileSize == 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.MaxTotalSize == 0 {
		o.MaxTotalSize = DefaultMaxTotalSize
	}
	return o, nil
}
