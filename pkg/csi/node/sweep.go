package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/layerset/layerset-csi/pkg/layers"
)

// SweepUppers deletes the kept uppers of persistent volumes that no longer
// exist, as exists reports (the cluster asked for PersistentVolumes, for
// instance). Only unstaged volumes are considered: one that is staged,
// published, mounted or busy with a call is never touched, and a volume
// exists cannot answer for is kept. It returns the ids it removed.
func (n *Server) SweepUppers(ctx context.Context, exists func(ctx context.Context, volumeID string) (bool, error)) (removed []string, err error) {
	records, _, err := n.state.list()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, rec := range records {
		if rec.Kind != kindPersistent || rec.Phase != phaseUnstaged {
			continue
		}
		ok, err := n.sweepOne(ctx, rec.ID, exists)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", rec.ID, err))
		}
		if ok {
			removed = append(removed, rec.ID)
		}
	}
	return removed, errors.Join(errs...)
}

func (n *Server) sweepOne(ctx context.Context, id string, exists func(context.Context, string) (bool, error)) (bool, error) {
	release, err := n.lock(id)
	if err != nil {
		return false, nil // busy: a call is staging it, so it exists
	}
	defer release()
	// Read again under the lock: a call may have staged it meanwhile.
	rec, err := n.state.load(id)
	if err != nil || rec == nil || rec.Kind != kindPersistent || rec.Phase != phaseUnstaged || len(rec.Targets) > 0 {
		return false, err
	}
	if vol, err := n.cfg.Store.Volume(id); err == nil && vol.Target != "" {
		mounted, err := isMounted(vol.Target)
		if err != nil || mounted {
			return false, err
		}
	}
	alive, err := exists(ctx, id)
	if err != nil || alive {
		return false, err
	}
	if err := n.cfg.Store.Unmount(ctx, id, layers.RemoveUpper); err != nil && !errors.Is(err, layers.ErrVolumeNotFound) {
		return false, err
	}
	if err := n.state.remove(rec); err != nil {
		return false, err
	}
	logger(ctx).Info("Removed the upper of a deleted persistent volume", "volumeID", id)
	return true, nil
}
