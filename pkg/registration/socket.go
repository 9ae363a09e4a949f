package registration

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"k8s.io/klog/v2"
)

// maxSocketPath is the longest path a unix socket may have: sun_path holds
// 108 bytes including the terminating NUL.
const maxSocketPath = 107

// socket is a unix listener that removes its path on exit only while the
// path is still its own, so a successor that already replaced it keeps
// its registration.
type socket struct {
	*net.UnixListener
	path string
	fi   fs.FileInfo
}

func listen(ctx context.Context, path string) (*socket, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes; unix sockets allow at most %d", path, len(path), maxSocketPath)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // remove decides, see socket
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, errors.Join(err, ul.Close())
	}
	return &socket{UnixListener: ul, path: path, fi: fi}, nil
}

// removeStale removes a socket left by an earlier run, which would make
// listen fail, and refuses to touch anything that is not a socket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("%s exists and is not a socket (mode %s); refusing to replace it", path, fi.Mode())
	}
	return os.Remove(path)
}

func (s *socket) remove(ctx context.Context) {
	// The gRPC server's Stop has closed the listener already, as a rule.
	if err := s.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		klog.FromContext(ctx).Error(err, "Closing the registration socket", "socket", s.path)
	}
	if fi, err := os.Lstat(s.path); err != nil || !os.SameFile(fi, s.fi) {
		return
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.FromContext(ctx).Error(err, "Could not remove the registration socket; the kubelet keeps the plugin registered until it is gone", "socket", s.path)
	}
}
