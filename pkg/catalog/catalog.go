// Package catalog says where LayerSets come from: it resolves a LayerSet by
// name to the chain of layers its volumes mount.
package catalog

import (
	"context"
	"errors"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
)

// ErrNotReady means a LayerSet exists but cannot be mounted yet: its images
// do not resolve, or its definition cannot be read.
var ErrNotReady = errors.New("LayerSet not ready")

// Catalog resolves a LayerSet by name to what its volumes mount.
type Catalog interface {
	// Resolve returns the LayerSet and its chain, bottom first. Errors wrap
	// compose.ErrLayerSetNotFound, ErrNotReady, compose.ErrCycle and the
	// other compose sentinels, and name the LayerSet, so that a caller can
	// tell the user what to fix.
	Resolve(ctx context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error)
}
