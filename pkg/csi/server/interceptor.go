package server

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// callMetrics records how long each CSI call took, by method and code.
type callMetrics struct{ duration *prometheus.HistogramVec }

func newCallMetrics(reg prometheus.Registerer) (*callMetrics, error) {
	if reg == nil {
		return &callMetrics{}, nil
	}
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "layerset_csi_call_duration_seconds",
		Help: "Duration of CSI calls by method and gRPC code.",
		// From a cached mount to a cold pull of a large chain.
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	}, []string{"method", "code"})
	if err := reg.Register(h); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register CSI call metrics: %w", err)
		}
		existing, ok := are.ExistingCollector.(*prometheus.HistogramVec)
		if !ok {
			return nil, fmt.Errorf("register CSI call metrics: %w", err)
		}
		h = existing // a second server in the same process shares it
	}
	return &callMetrics{duration: h}, nil
}

func (m *callMetrics) observe(method string, code codes.Code, d time.Duration) {
	if m.duration != nil {
		m.duration.WithLabelValues(method, code.String()).Observe(d.Seconds())
	}
}

// callInterceptor gives each call a logger carrying its method and volume
// id, logs its outcome and duration, records its metrics, and turns a
// panic into an Internal error so one bad call does not take down the
// mounts of every other volume with the process.
func callInterceptor(m *callMetrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		start := time.Now()
		method := path.Base(info.FullMethod)
		var volumeID string
		if r, ok := req.(interface{ GetVolumeId() string }); ok {
			volumeID = r.GetVolumeId()
		}
		log := klog.FromContext(ctx).WithValues("method", method)
		if volumeID != "" {
			log = log.WithValues("volumeID", volumeID)
		}
		defer func() {
			if p := recover(); p != nil {
				log.Error(fmt.Errorf("panic: %v", p), "CSI call panicked")
				resp, err = nil, status.Errorf(codes.Internal, "%s panicked: %v", method, p)
			}
			code, d := status.Code(err), time.Since(start)
			m.observe(method, code, d)
			switch {
			case err != nil:
				klog.ErrorS(err, "CSI call failed", "method", method, "volumeID", volumeID, "duration", d, "code", code)
			case isQuery(method):
				klog.V(5).InfoS("CSI call", "method", method, "volumeID", volumeID, "duration", d, "code", code)
			default:
				klog.InfoS("CSI call", "method", method, "volumeID", volumeID, "duration", d, "code", code)
			}
		}()
		return handler(klog.NewContext(ctx, log), req)
	}
}

// isQuery tells calls that only read, which kubelet and the sidecars make
// every few seconds, from those that change something.
func isQuery(method string) bool {
	for _, p := range []string{"Get", "List", "Probe", "Validate"} {
		if strings.HasPrefix(method, p) || strings.HasPrefix(method, "Node"+p) || strings.HasPrefix(method, "Controller"+p) {
			return true
		}
	}
	return false
}
