package node

import (
	"context"
	"fmt"

	"github.com/layerset/layerset-csi/pkg/overlay"
)

// recover reconciles every volume record with the mount table, after a
// crash, a kill -9 or a reboot:
//
//   - operations cut short are finished when their mount happened and
//     undone when it did not;
//   - mounts that survived are adopted as they are;
//   - bind mounts that are gone are forgotten, so kubelet's publish makes
//     them again;
//   - a persistent volume's upper is never deleted.
//
// It runs before the node serves, so no call races with it.
func (n *Server) recover(ctx context.Context) error {
	log := logger(ctx)
	records, bad, err := n.state.list()
	if err != nil {
		return err
	}
	for _, err := range bad {
		log.Error(err, "Skipping a volume record that cannot be read; its mounts, if any, are released when kubelet unpublishes them")
	}
	var errs []error
	for _, rec := range records {
		var err error
		switch rec.Kind {
		case kindEphemeral:
			err = n.recoverEphemeral(ctx, rec)
		case kindPersistent:
			err = n.recoverPersistent(ctx, rec)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %s: %w", rec.ID, err))
		}
	}
	log.Info("Recovered volume records", "volumes", len(records), "unreadable", len(bad), "failed", len(errs))
	// A volume that cannot be recovered now keeps its record: its
	// unpublish or unstage tries again. The node serves the others.
	for _, err := range errs {
		log.Error(err, "Cannot recover volume")
	}
	return nil
}

func (n *Server) recoverEphemeral(ctx context.Context, rec *volumeRecord) error {
	log := logger(ctx).WithValues("volumeID", rec.ID, "target", rec.MountPath, "phase", rec.Phase)
	mounted, err := isMounted(rec.MountPath)
	if err != nil {
		return err
	}
	switch {
	case rec.Phase == phasePublishing && mounted:
		log.Info("Finishing an interrupted publish: the volume is mounted")
		rec.Phase = phasePublished
		return n.state.save(rec)
	case rec.Phase == phasePublishing, rec.Phase == phaseUnpublishing:
		log.Info("Undoing an interrupted operation on an inline volume")
		return n.removeEphemeral(ctx, rec)
	case rec.Phase == phasePublished && !mounted:
		// A reboot: kubelet publishes the volume again, with the upper
		// it had, or unpublishes it.
		log.Info("Inline volume is not mounted any more; keeping it for kubelet to publish again or unpublish")
	}
	return nil
}

func (n *Server) recoverPersistent(ctx context.Context, rec *volumeRecord) error {
	log := logger(ctx).WithValues("volumeID", rec.ID, "stagingPath", rec.MountPath, "phase", rec.Phase)
	changed := false
	var kept []targetRecord
	for _, t := range rec.Targets {
		mounted, err := isMounted(t.Path)
		if err != nil {
			return err
		}
		switch {
		case t.Phase == phaseUnpublishing:
			if err := ours(rec.ID, t.Path, t.MountDev); err != nil {
				return err
			}
			if err := overlay.Unmount(ctx, t.Path); err != nil {
				return err
			}
			if err := removeMountPoint(t.Path); err != nil {
				return err
			}
			log.Info("Finished an interrupted unpublish", "target", t.Path)
			changed = true
		case !mounted:
			if err := removeMountPoint(t.Path); err != nil {
				return err
			}
			log.Info("Forgetting a target whose bind mount is gone", "target", t.Path, "targetPhase", t.Phase)
			changed = true
		default:
			if t.Phase != phasePublished {
				log.Info("Finishing an interrupted publish: the bind mount is in place", "target", t.Path)
				t.Phase, changed = phasePublished, true
			}
			kept = append(kept, t)
		}
	}
	rec.Targets = kept

	switch rec.Phase {
	case phaseStaging:
		mounted, err := isMounted(rec.MountPath)
		if err != nil {
			return err
		}
		if mounted {
			log.Info("Finishing an interrupted stage: the volume is mounted")
			rec.Phase = phaseStaged
		} else {
			log.Info("Undoing an interrupted stage; the upper is kept")
			return n.abandonStage(ctx, rec)
		}
		changed = true
	case phaseUnstaging:
		log.Info("Finishing an interrupted unstage; the upper is kept")
		if err := n.unmountStaged(ctx, rec); err != nil {
			return err
		}
		rec.Phase, rec.MountPath, rec.Targets, changed = phaseUnstaged, "", nil, true
	}
	if !changed {
		return nil
	}
	return n.state.save(rec)
}
