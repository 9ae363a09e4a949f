package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
)

// NodeGetVolumeStats reports what the volume's writes use, from its upper,
// against what the store's file system has left: every volume of the node
// shares that space. Whether the volume is still mounted is told by
// NodeGetVolumeHealth.
func (n *Server) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if err := rpc.RequireField("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := rpc.RequireField("volume_path", req.GetVolumePath()); err != nil {
		return nil, err
	}
	resp, err := n.volumeStats(ctx, req.GetVolumeId(), req.GetVolumePath())
	if err != nil {
		return nil, n.status(ctx, err)
	}
	return resp, nil
}

func (n *Server) volumeStats(ctx context.Context, id, path string) (*csi.NodeGetVolumeStatsResponse, error) {
	rec, err := n.state.load(id)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s is not on this node", id)
	}
	if !rec.has(path) {
		return nil, status.Errorf(codes.NotFound, "volume %s is not staged or published at %s", id, path)
	}
	vol, err := n.cfg.Store.Volume(id)
	if errors.Is(err, layers.ErrVolumeNotFound) {
		return nil, status.Errorf(codes.NotFound, "volume %s has no directories in the layer store %s", id, n.cfg.Store.Dir())
	}
	if err != nil {
		return nil, err
	}
	used, err := diskUsage(ctx, vol.UpperDir())
	if err != nil {
		return nil, fmt.Errorf("measure the writes of volume %s: %w", id, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(n.cfg.Store.Dir(), &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", n.cfg.Store.Dir(), err)
	}
	bsize := int64(st.Bsize)
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Used: used.bytes, Available: int64(st.Bavail) * bsize, Total: int64(st.Blocks) * bsize},
			{Unit: csi.VolumeUsage_INODES, Used: used.inodes, Available: int64(st.Ffree), Total: int64(st.Files)},
		},
	}, nil
}

// has reports whether path is where the volume is staged or published.
func (r *volumeRecord) has(path string) bool {
	if r.MountPath == path && r.Phase != phaseUnstaged {
		return true
	}
	return r.target(path) != nil
}

type usage struct{ bytes, inodes int64 }

// diskUsage sums the sizes of the files under root and counts their
// inodes, the root excluded; hard links count once.
func diskUsage(ctx context.Context, root string) (usage, error) {
	var u usage
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == root {
			return nil
		}
		if u.inodes%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		}
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 && !fi.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.inodes++
		if !fi.IsDir() {
			u.bytes += fi.Size()
		}
		return nil
	})
	return u, err
}
