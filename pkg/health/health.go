package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"
)

// CheckTimeout is how long /healthz waits for all checks together. A check
// that has not answered by then counts as failed: a kubelet liveness probe
// would rather restart a wedged process than wait on it.
const CheckTimeout = 5 * time.Second

// shutdownGrace bounds how long in-flight requests may finish once the
// server is told to stop.
const shutdownGrace = 5 * time.Second

// Check reports whether one part of the process works. Its error should say
// which part failed and why, since /healthz shows it verbatim.
type Check func(ctx context.Context) error

// Serve listens on addr (host:port) and serves Handler(reg, checks...) until
// ctx ends, then shuts the server down and returns nil.
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, checks ...Check) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health: listen on %s: %w", addr, err)
	}
	return ServeListener(ctx, l, reg, checks...)
}

// ServeListener is Serve on a listener the caller opened; it closes l.
func ServeListener(ctx context.Context, l net.Listener, reg *prometheus.Registry, checks ...Check) error {
	srv := &http.Server{
		Handler:           Handler(reg, checks...),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	stopped := make(chan error, 1)
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
			stopped <- nil
			return
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		stopped <- srv.Shutdown(sctx)
	}()
	klog.FromContext(ctx).Info("Serving health and metrics", "address", l.Addr().String())
	err := srv.Serve(l)
	close(done)
	if shutdownErr := <-stopped; shutdownErr != nil {
		klog.FromContext(ctx).Error(shutdownErr, "Health server did not shut down cleanly")
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("health: serve on %s: %w", l.Addr(), err)
}

// Handler serves /healthz, and /metrics when reg is not nil.
func Handler(reg *prometheus.Registry, checks ...Check) http.Handler {
	return handler(reg, CheckTimeout, checks)
}

func handler(reg *prometheus.Registry, timeout time.Duration, checks []Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if failed := runChecks(r.Context(), timeout, checks); len(failed) > 0 {
			msgs := make([]string, len(failed))
			for i, err := range failed {
				msgs[i] = err.Error()
			}
			klog.FromContext(r.Context()).V(2).Info("Health check failed", "errors", msgs)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(msgs, "\n"))
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if reg != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	return mux
}

// runChecks runs every check at once under one deadline and returns the
// errors of those that failed, in the order the checks were given. Checks
// that ignore their context are abandoned at the deadline, not waited for.
func runChecks(ctx context.Context, timeout time.Duration, checks []Check) []error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(checks)) // buffered: abandoned checks never block
	for i, check := range checks {
		go func() { results <- result{i, check(ctx)} }()
	}
	errs := make([]error, len(checks))
	answered := make([]bool, len(checks))
collect:
	for pending := len(checks); pending > 0; pending-- {
		select {
		case r := <-results:
			errs[r.i], answered[r.i] = r.err, true
		case <-ctx.Done():
			for i := range errs {
				if !answered[i] {
					errs[i] = fmt.Errorf("health check %d of %d did not answer within %s: %w", i+1, len(checks), timeout, ctx.Err())
				}
			}
			break collect
		}
	}
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}
