package health

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serve runs ServeListener on 127.0.0.1:0 until the test ends and returns
// the server's base URL.
func serve(t *testing.T, reg *prometheus.Registry, checks ...Check) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, reg, checks...) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener returned %v after its context ended, want nil", err)
		}
	})
	return "http://" + l.Addr().String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func pass(context.Context) error { return nil }

func fail(msg string) Check {
	return func(context.Context) error { return errors.New(msg) }
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name     string
		checks   []Check
		code     int
		want     []string
		dontWant []string
	}{
		{"no checks", nil, http.StatusOK, []string{"ok"}, nil},
		{"all pass", []Check{pass, pass}, http.StatusOK, []string{"ok"}, nil},
		{"one fails", []Check{pass, fail("CSI socket gone")}, http.StatusServiceUnavailable, []string{"CSI socket gone"}, []string{"ok"}},
		{"every failure shown", []Check{fail("first broken"), pass, fail("third broken")}, http.StatusServiceUnavailable,
			[]string{"first broken", "third broken"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, serve(t, nil, tt.checks...)+"/healthz")
			if code != tt.code {
				t.Errorf("status %d, want %d; body %q", code, tt.code, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("body %q does not contain %q", body, w)
				}
			}
			for _, w := range tt.dontWant {
				if strings.Contains(body, w) {
					t.Errorf("body %q contains %q", body, w)
				}
			}
		})
	}
}

// A check that never returns must not hold /healthz hostage: the handler
// answers 503 at the deadline and names the check that did not answer.
func TestHealthzAbandonsHungCheck(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hung := func(context.Context) error { <-release; return nil }
	srv := &http.Server{Handler: handler(nil, 50*time.Millisecond, []Check{pass, hung}), ReadHeaderTimeout: time.Second}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()

	code, body := get(t, "http://"+l.Addr().String()+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "health check 2 of 2 did not answer") {
		t.Errorf("got %d %q, want 503 naming check 2", code, body)
	}
	if strings.Contains(body, "check 1 of 2") {
		t.Errorf("check 1 passed but is reported: %q", body)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "layerset_test_events_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)

	code, body := get(t, serve(t, reg)+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "layerset_test_events_total 3") {
		t.Errorf("got %d %q, want 200 with the counter at 3", code, body)
	}
	if code, _ := get(t, serve(t, nil)+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without a registry: status %d, want 404", code)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ServeListener(ctx, l, nil) }()
	if code, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("status %d before shutdown", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeListener: %v, want nil", err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		_ = conn.Close() // the test has failed already
		t.Errorf("%s still accepts connections after shutdown", addr)
	}
}

func TestServeListenError(t *testing.T) {
	err := Serve(t.Context(), "127.0.0.1:notaport", nil)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") {
		t.Errorf("Serve on a bad address: %v, want an error naming the address", err)
	}
}
