package server

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ParseEndpoint returns the socket path of a CSI endpoint: unix:///PATH,
// or a bare PATH. Other transports are refused: kubelet and the sidecars
// reach CSI plugins over unix sockets only.
func ParseEndpoint(endpoint string) (string, error) {
	p := endpoint
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return "", fmt.Errorf("endpoint %q: %w", endpoint, err)
		}
		if u.Scheme != "unix" || u.Host != "" {
			return "", fmt.Errorf("endpoint %q: want unix:///ABSOLUTE/PATH or a bare path", endpoint)
		}
		p = u.Path
	}
	if p == "" {
		return "", fmt.Errorf("endpoint %q: no socket path", endpoint)
	}
	return filepath.Abs(p)
}

// Listen listens on the endpoint's unix socket. A socket left by an
// earlier run is removed first; one that another process still answers
// on, or a path that is not a socket, is an error.
func Listen(endpoint string) (net.Listener, error) {
	p, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if err := removeStaleSocket(p); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	lis, err := net.Listen("unix", p)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p, err)
	}
	return lis, nil
}

func removeStaleSocket(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("endpoint %s exists and is not a socket; remove it or choose another path", p)
	}
	if c, err := net.DialTimeout("unix", p, time.Second); err == nil {
		return errors.Join(fmt.Errorf("endpoint %s is in use by another process", p), c.Close())
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", p, err)
	}
	return nil
}
