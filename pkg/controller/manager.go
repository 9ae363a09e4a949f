package controller

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/layerset/layerset-csi/internal/kubescheme"
)

// LeaderElectionID names the Lease that replicas of the controller elect a
// leader with.
const LeaderElectionID = "layerset-controller.layerset.io"

// ManagerOptions configures NewManager.
type ManagerOptions struct {
	// LeaderElection makes replicas elect one active leader; the
	// Deployment runs with it on.
	LeaderElection bool
	// LeaderElectionNamespace holds the Lease; empty means the namespace
	// the pod runs in.
	LeaderElectionNamespace string
	// MetricsAddr and HealthAddr are the listen addresses of the metrics
	// and health probe servers; "0" or empty turns one off.
	MetricsAddr, HealthAddr string
}

// NewManager returns a manager whose cache suits the reconciler: LayerSets
// and NodeCaches in full; Nodes and Secrets as metadata only, and only the
// Secrets of type kubernetes.io/dockerconfigjson. Managed fields are not
// kept. Secret data is read through the manager's API reader.
func NewManager(cfg *rest.Config, o ManagerOptions) (ctrl.Manager, error) {
	scheme, err := kubescheme.New()
	if err != nil {
		return nil, err
	}
	metricsAddr := o.MetricsAddr
	if metricsAddr == "" {
		metricsAddr = "0"
	}
	return ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress:  o.HealthAddr,
		LeaderElection:          o.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		// The lease outlives the process by at most LeaseDuration; release
		// it on a clean exit so a rolling update does not wait for it.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       ptr.To(30 * time.Second),
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			// Reading a type nothing watches fails instead of starting a
			// watch: a Get of a whole Secret must not cache them all.
			ReaderFailOnMissingInformer: true,
			ByObject: map[client.Object]cache.ByObject{
				&corev1.Secret{}: {Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeDockerConfigJson))},
			},
		},
	})
}

// Run runs the controller until ctx ends: `layerset-csi controller`.
func Run(ctx context.Context, cfg *rest.Config, mo ManagerOptions, opts Options) error {
	mgr, err := NewManager(cfg, mo)
	if err != nil {
		return fmt.Errorf("creating the controller manager: %w", err)
	}
	if err := SetupWithManager(ctx, mgr, opts); err != nil {
		return err
	}
	if mo.HealthAddr != "" && mo.HealthAddr != "0" {
		if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
			return err
		}
		if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
			if !mgr.GetCache().WaitForCacheSync(req.Context()) {
				return fmt.Errorf("cache not synced")
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}
