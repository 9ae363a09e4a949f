package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

// The mount table operations of the node service, apart from the code
// that decides when to make them.

// bindMount mounts src at target, creating target.
func bindMount(src, target string, flags overlay.Flags) error {
	state, err := overlay.PrepareTarget(target)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "target_path: %v", err)
	}
	if state == overlay.TargetFound {
		if mounted, err := isMounted(target); err != nil {
			return err
		} else if mounted {
			return status.Errorf(codes.FailedPrecondition, "target_path %s already has a mount this plugin did not make", target)
		}
	}
	return overlay.Bind(src, target, overlay.BindOptions{Flags: flags})
}

// isMounted reports whether path is a mount point.
func isMounted(path string) (bool, error) { return overlay.IsMounted(path) }

// removeMountPoint deletes the empty directory a volume was mounted on.
// rmdir(2), not os.Remove or RemoveAll: should anything still be mounted
// there, the call fails instead of deleting the volume's content through
// the mount, and a file or a symlink at path (not a mount point the plugin
// made) is left where it is.
func removeMountPoint(path string) error {
	err := unix.Rmdir(path)
	switch {
	case err == nil, errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ENOTDIR):
		return nil // not a directory: not ours to remove
	}
	return fmt.Errorf("remove mount point %s: %w", path, err)
}

// ours checks that what is mounted at path is the mount the plugin made
// there, whose device it recorded (0: a record of an older version, which
// did not keep one). Nothing mounted is fine: there is nothing to undo.
func ours(volumeID, path string, want uint64) error {
	mounted, err := isMounted(path)
	if err != nil || !mounted || want == 0 {
		return err
	}
	got, err := overlay.MountDev(path)
	if err != nil {
		return err
	}
	if got != want {
		return status.Errorf(codes.FailedPrecondition,
			"%s has a mount (device %d:%d) that is not the one this plugin made for volume %s (device %d:%d): something mounted over it or in its place; unmount that first",
			path, unix.Major(got), unix.Minor(got), volumeID, unix.Major(want), unix.Minor(want))
	}
	return nil
}

// mountID returns the id of the mount just made at path.
func mountDev(path string) (uint64, error) { return overlay.MountDev(path) }

// checkPath refuses a target or staging path inside the plugin's own
// directories (a layer, another volume's upper, the records) or above
// them, where a mount would hide them.
func (n *Server) checkPath(field, path string) error {
	for _, own := range []string{n.cfg.Store.Root(), n.cfg.StateDir} {
		if path == "/" || path == own || strings.HasPrefix(path, own+"/") || strings.HasPrefix(own, path+"/") {
			return status.Errorf(codes.InvalidArgument, "%s %s is inside, or holds, the plugin's own directory %s", field, path, own)
		}
	}
	return nil
}

// checkTarget refuses, besides what checkPath does, a path with a symlink
// on the way and a directory that already holds files, which a mount would
// hide and whose mount point could then never be removed.
func (n *Server) checkTarget(field, path string) error {
	if err := n.checkPath(field, path); err != nil {
		return err
	}
	switch err := overlay.CheckTarget(path); {
	case errors.Is(err, overlay.ErrSymlinkInTarget):
		return status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	case errors.Is(err, os.ErrNotExist):
		return nil // nothing there yet: neither files nor a mount
	}
	mounted, err := isMounted(path)
	if err != nil || mounted {
		return err // a mount is judged by the caller, against its record
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(1)
	if cerr := f.Close(); cerr != nil {
		return cerr
	}
	if errors.Is(err, io.EOF) || (err == nil && len(names) == 0) {
		return nil
	}
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) {
			return status.Errorf(codes.InvalidArgument, "%s %s is not a directory", field, path)
		}
		return err
	}
	return status.Errorf(codes.FailedPrecondition, "%s %s is a directory that already holds files (%s); a volume is mounted on an empty one", field, path, names[0])
}

// checkMountRequest checks what a call that mounts is given, before it
// does anything: the volume id, the path it mounts at (field), and the
// capability with its mount flags (a PV's or StorageClass's mountOptions).
func (n *Server) checkMountRequest(volumeID, field, path string, c *csi.VolumeCapability) error {
	if err := n.checkPathRequest(volumeID, field, path); err != nil {
		return err
	}
	if err := rpc.RequireMountCapability(c); err != nil {
		return err
	}
	return checkMountFlags(c)
}

// checkPathRequest checks the volume id and the path (field) of any call
// that names one, unmounting ones too.
func (n *Server) checkPathRequest(volumeID, field, path string) error {
	if err := rpc.RequireField("volume_id", volumeID); err != nil {
		return err
	}
	if err := rpc.RequirePath(field, path); err != nil {
		return err
	}
	return n.checkPath(field, path)
}

// checkMountFlags checks a capability's mount flags.
func checkMountFlags(c *csi.VolumeCapability) error {
	if _, err := overlay.ParseFlags(overlay.DefaultFlags, c.GetMount().GetMountFlags()); err != nil {
		return status.Errorf(codes.InvalidArgument, "volume_capability.mount.mount_flags: %v", err)
	}
	return nil
}

// lockTarget takes the volume's in-flight slot and then checks the path
// it mounts at: under the lock, so that a retry racing the first call
// does not read the target while that one mounts it.
func (n *Server) lockTarget(volumeID, field, path string) (release func(), err error) {
	release, err = n.lock(volumeID)
	if err != nil {
		return nil, err
	}
	if err := n.checkTarget(field, path); err != nil {
		release()
		return nil, err
	}
	return release, nil
}
