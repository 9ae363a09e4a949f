package quota

import (
	"errors"
	"fmt"

	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// The smallest and largest limits (names.MinSize, names.MaxSize): below
// 1 MiB an image would be mostly metadata; 1 PiB bounds the sparse file.
const (
	MinLimit = names.MinSize
	MaxLimit = names.MaxSize
)

// Usage is what a limited upper holds against its limit.
type Usage struct {
	// Bytes and Inodes are in use.
	Bytes, Inodes int64
	// Limit is the most Bytes may reach.
	Limit int64
	// FreeInodes is how many more inodes may be created, when the
	// mechanism bounds them (an image's filesystem); -1 when it does not.
	FreeInodes int64
}

// ErrUnsupported marks a mechanism this node's kernel or filesystem lacks.
var ErrUnsupported = errors.New("not supported")

// ErrShrink marks a new limit below the current one: an upper cannot give
// back what it may already hold.
var ErrShrink = errors.New("a limit cannot shrink")

// Mode is how a node limits its volumes: the --quota flag.
type Mode string

const (
	// ModeAuto uses project quotas where the store's filesystem has them,
	// and the image fallback elsewhere.
	ModeAuto Mode = "auto"
	// ModeProject uses project quotas and refuses sized volumes where
	// they are missing.
	ModeProject Mode = "project"
	// ModeFallback always uses filesystem images.
	ModeFallback Mode = "fallback"
	// ModeOff ignores sizes.
	ModeOff Mode = "off"
)

// ParseMode reads a --quota value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeAuto, ModeProject, ModeFallback, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("quota mode %q is not one of auto, project, fallback, off", s)
}
