package provisioner

import (
	"context"
	"errors"
	"fmt"
	"time"

	csicontroller "github.com/layerset/layerset-csi/pkg/csi/controller"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// DefaultTimeout bounds one CreateVolume or DeleteVolume call. CreateVolume
// may resolve the LayerSet's images in a registry.
const DefaultTimeout = time.Minute

// Controller creates and deletes volumes: the CSI controller service of
// pkg/csi/controller, called in process.
type Controller interface {
	CreateVolume(context.Context, *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error)
	DeleteVolume(context.Context, *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error)
}

var _ Controller = (*csicontroller.Server)(nil)

// Options configure the provisioner.
type Options struct {
	// DriverName is the provisioner name StorageClasses give; default
	// names.DriverName.
	DriverName string
	// Controller creates and deletes the volumes.
	Controller Controller
	// Timeout bounds each call to Controller; default DefaultTimeout.
	Timeout time.Duration
	// Workers bounds the claims, and the volumes, handled at once; 0
	// means 4.
	Workers int
}

func (o *Options) setDefaults() error {
	if o.Controller == nil {
		return errors.New("provisioner: no CSI controller service")
	}
	if o.Timeout < 0 || o.Workers < 0 {
		return fmt.Errorf("provisioner: timeout %s and workers %d must not be negative", o.Timeout, o.Workers)
	}
	if o.DriverName == "" {
		o.DriverName = names.DriverName
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Workers == 0 {
		o.Workers = 4
	}
	return nil
}
