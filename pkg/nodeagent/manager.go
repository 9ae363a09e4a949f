package nodeagent

import (
	"errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/layerset/layerset-csi/internal/kubescheme"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// ManagerOptions configures NewManager.
type ManagerOptions struct {
	// NodeName is the node the agent runs for.
	NodeName string
	// MetricsAddr and HealthAddr are the listen addresses of the metrics
	// and health probe servers; "0" or empty turns one off.
	MetricsAddr, HealthAddr string
}

// NewManager returns a manager whose cache holds what one node's agent
// reads, and no more, since every node runs one: its own Node and
// NodeCache, all LayerSets, and of the PersistentVolumes only their names
// and CSI volume handles. Reading any other type through the cache fails
// instead of starting a cluster-wide watch; a catalog.Cluster reads
// LayerSets from it and Secrets through the manager's API reader.
func NewManager(cfg *rest.Config, o ManagerOptions) (ctrl.Manager, error) {
	if o.NodeName == "" {
		return nil, errors.New("node agent: node name is empty")
	}
	scheme, err := kubescheme.New()
	if err != nil {
		return nil, err
	}
	metricsAddr := o.MetricsAddr
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	thisNode := fields.OneTermEqualSelector("metadata.name", o.NodeName)
	return ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: o.HealthAddr,
		Cache: cache.Options{
			DefaultTransform:            cache.TransformStripManagedFields(),
			ReaderFailOnMissingInformer: true,
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Node{}:             {Field: thisNode},
				&v1alpha1.NodeCache{}:      {Field: thisNode},
				&corev1.PersistentVolume{}: {Transform: trimPersistentVolume},
			},
		},
	})
}

// trimPersistentVolume keeps of a PersistentVolume what the sweep reads.
func trimPersistentVolume(in any) (any, error) {
	pv, ok := in.(*corev1.PersistentVolume)
	if !ok {
		return in, nil
	}
	out := &corev1.PersistentVolume{
		TypeMeta: pv.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name:              pv.Name,
			UID:               pv.UID,
			ResourceVersion:   pv.ResourceVersion,
			DeletionTimestamp: pv.DeletionTimestamp,
		},
	}
	if c := pv.Spec.CSI; c != nil {
		out.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: c.Driver, VolumeHandle: c.VolumeHandle}
	}
	return out, nil
}
