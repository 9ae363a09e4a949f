// Package health serves a process's liveness and metrics over HTTP: /healthz
// runs the process's checks, /metrics exposes its Prometheus registry.
package health
