package controller

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
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
	// Leases lasts LeaseDuration; the leader gives up when it could not
	// renew for RenewDeadline, trying every RetryPeriod. Zero keeps
	// client-go's 15s, 10s and 2s. An API server that stalls for longer
	// than the renew deadline costs the leader its lease, and the process
	// exits so that a restart campaigns again.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
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
	if err := o.validateLeases(); err != nil {
		return nil, err
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
		LeaseDuration:                 nonZero(o.LeaseDuration),
		RenewDeadline:                 nonZero(o.RenewDeadline),
		RetryPeriod:                   nonZero(o.RetryPeriod),
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

// validateLeases checks what client-go would refuse only once the manager
// starts, with the durations it names.
func (o ManagerOptions) validateLeases() error {
	lease, renew, retry := orDefault(o.LeaseDuration, 15*time.Second), orDefault(o.RenewDeadline, 10*time.Second), orDefault(o.RetryPeriod, 2*time.Second)
	switch {
	case lease <= 0 || renew <= 0 || retry <= 0:
		return fmt.Errorf("leader election durations must be positive")
	case renew >= lease:
		return fmt.Errorf("leader election: the renew deadline (%s) must be shorter than the lease duration (%s)", renew, lease)
	case float64(renew) <= leaderelection.JitterFactor*float64(retry):
		return fmt.Errorf("leader election: the renew deadline (%s) must exceed %.1f times the retry period (%s)", renew, leaderelection.JitterFactor, retry)
	}
	return nil
}

func orDefault(d, fallback time.Duration) time.Duration {
	if d == 0 {
		return fallback
	}
	return d
}

func nonZero(d time.Duration) *time.Duration {
	if d == 0 {
		return nil
	}
	return &d
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
