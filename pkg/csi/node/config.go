package node

import (
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/events"

	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// Config configures the node service.
type Config struct {
	DriverName string // default names.DriverName
	Version    string
	NodeID     string
	// Endpoint is where the plugin listens, unix:///path.sock or a bare
	// path; Listen opens it, the node service only reports it.
	Endpoint string
	// StateDir holds one record per volume, e.g. ROOT/csi.
	StateDir string
	Store    *layers.Store
	Catalog  catalog.Catalog
	// Keys reads ConfigMap and Secret keys for init files; nil in
	// standalone mode, where such files fail to render.
	Keys compose.KeyReader
	// Metrics receives the node's volume gauges; nil means no metrics.
	Metrics prometheus.Registerer
	// Events records what a pod or PersistentVolume should know of its
	// volume (a size not enforced, a deprecated attribute); nil in
	// standalone mode.
	Events events.EventRecorder
}

func (c *Config) setDefaults() error {
	if c.DriverName == "" {
		c.DriverName = names.DriverName
	}
	switch {
	case c.NodeID == "":
		return fmt.Errorf("node id is empty")
	case c.StateDir == "" || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("state directory %q must be an absolute path", c.StateDir)
	case c.Store == nil:
		return fmt.Errorf("no layer store")
	case c.Catalog == nil:
		return fmt.Errorf("no LayerSet catalog")
	}
	return nil
}
