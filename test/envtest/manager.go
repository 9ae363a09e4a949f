package envtest

import (
	"context"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// RunManager starts mgr and stops it when the test ends, failing the test
// if it returns an error or does not stop within Timeout. Its context is
// its own: cancelling the caller's ctx does not stop it early.
func RunManager(t *testing.T, ctx context.Context, mgr manager.Manager) {
	t.Helper()
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(Timeout):
			t.Errorf("manager did not stop in %s", Timeout)
		}
	})
}
