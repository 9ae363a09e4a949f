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

// NodeGetVolumeStats reports what the volume's writes use. A volume with a
// size limit reports its limit as capacity, and its use as the quota or its
// image's filesystem counts it, in constant time. A volume without one
// reports the sizes of its upper's files, walked, against what the store's
// filesystem has left: every such volume of the node shares that space.
// Whether the volume is still mounted is told by NodeGetVolumeHealth.
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
	if vol.Limit != nil {
		return limitedStats(ctx, n.cfg.Store, vol)
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

// limitedStats reads a sized volume's use from its limit: capacity is the
// limit, available what is left of it, or of the disk if that is less.
func limitedStats(ctx context.Context, store *layers.Store, vol *layers.Volume) (*csi.NodeGetVolumeStatsResponse, error) {
	u, err := store.Usage(ctx, vol)
	if err != nil {
		return nil, fmt.Errorf("read the usage of volume %s: %w", vol.ID, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(store.Dir(), &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", store.Dir(), err)
	}
	avail := max(u.Limit-u.Bytes, 0)
	inodes := &csi.VolumeUsage{Unit: csi.VolumeUsage_INODES, Used: u.Inodes}
	if u.FreeInodes >= 0 {
		inodes.Available, inodes.Total = u.FreeInodes, u.Inodes+u.FreeInodes
	} else {
		// A project quota bounds bytes only; inodes come from the disk.
		avail = min(avail, int64(st.Bavail)*int64(st.Bsize))
		inodes.Available, inodes.Total = int64(st.Ffree), int64(st.Files)
	}
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Used: u.Bytes, Available: avail, Total: u.Limit},
			inodes,
		},
	}, nil
}
