package layers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"

	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// ErrNotLimited marks a volume without a size limit, asked for its limit.
var ErrNotLimited = errors.New("volume has no size limit")

// openLimits settles on how sized volumes are limited and claims the
// project ids the existing volumes' records hold.
func (s *Store) openLimits(ctx context.Context) error {
	opts := s.opts.Quota
	opts.Dir = s.dir
	if opts.Mode == "" {
		opts.Mode = quota.ModeOff
		ctx = klog.NewContext(ctx, klog.FromContext(ctx).V(2))
	}
	limits, err := quota.Open(ctx, opts)
	if err != nil {
		return err
	}
	s.limits = limits
	vols, err := s.Volumes()
	if err != nil {
		return err
	}
	for _, v := range vols {
		if err := limits.Adopt(v.Dir, v.Limit); err != nil {
			return err
		}
	}
	return nil
}

// Limits is how this store limits sized volumes.
func (s *Store) Limits() *quota.Limiter { return s.limits }

// UpperDir returns the directory that holds the volume's writes.
func (v *Volume) UpperDir() string { return filepath.Join(quota.Dir(v.Dir, v.Limit), diffName) }

// sizeVolume brings a mounted or about to be mounted volume's limit to
// spec's size: a larger size raises it; a smaller one, or none, keeps
// what the volume has, since an upper cannot give back what it may hold.
func (s *Store) sizeVolume(ctx context.Context, vol *Volume, size int64) error {
	if vol.Limit == nil || size <= vol.Limit.Bytes {
		if vol.Limit == nil && size > 0 {
			klog.FromContext(ctx).Info("Volume was made without a size limit and keeps none", "volumeID", vol.ID, "size", size)
		}
		return nil
	}
	lim, err := s.limits.Resize(ctx, vol.Dir, vol.Limit, size)
	if err != nil {
		return fmt.Errorf("raise the size limit of volume %q: %w", vol.ID, err)
	}
	vol.Limit = lim
	return nil
}

// Resize raises the size limit of a volume, live; a smaller size is
// quota.ErrShrink, a volume without a limit ErrNotLimited.
func (s *Store) Resize(ctx context.Context, id string, bytes int64) (*Volume, error) {
	unlock, err := s.lock(shared)
	if err != nil {
		return nil, err
	}
	defer unlock()
	vol, err := s.Volume(id)
	if err != nil {
		return nil, err
	}
	if vol.Limit == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotLimited, id)
	}
	switch {
	case bytes == vol.Limit.Bytes:
		return vol, nil
	case bytes < vol.Limit.Bytes:
		return nil, fmt.Errorf("%w: volume %q is limited to %d bytes, not %d", quota.ErrShrink, id, vol.Limit.Bytes, bytes)
	}
	// An image is mounted only while its volume is; between stages it
	// is mounted to grow, and left for the next Mount to use.
	if err := s.limits.Activate(ctx, vol.Dir, vol.Limit); err != nil {
		return nil, err
	}
	if err := s.sizeVolume(ctx, vol, bytes); err != nil {
		return nil, err
	}
	return vol, s.writeRecord(vol, atomicfile.Durable)
}

// Usage is what a sized volume holds against its limit, from the quota
// or its image: no walk of the tree.
func (s *Store) Usage(ctx context.Context, vol *Volume) (quota.Usage, error) {
	if vol.Limit == nil {
		return quota.Usage{}, fmt.Errorf("%w: %q", ErrNotLimited, vol.ID)
	}
	return s.limits.Usage(ctx, vol.Dir, vol.Limit)
}

func (s *Store) writeRecord(vol *Volume, d atomicfile.Durability) error {
	record, err := json.Marshal(vol)
	if err != nil {
		return err
	}
	return atomicfile.WriteFiles(map[string][]byte{filepath.Join(vol.Dir, recordName): record}, 0o644, d)
}
