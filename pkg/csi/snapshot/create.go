package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
	"github.com/layerset/layerset-csi/pkg/volumeid"
)

// CreateSnapshot commits the source volume's upper into a layer and
// records it as snapshot name, pushing its image when the parameters name
// a repository (see the package comment).
func (s *Server) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	r, err := s.parseCreate(req)
	if err != nil {
		return nil, err
	}
	release, err := s.names.Acquire(r.name)
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "snapshot %s is being made or deleted; retry when that is done", r.name)
	}
	rec, err := s.records.Load(r.name)
	if err != nil {
		release()
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", r.name, err)
	}
	if rec != nil {
		release()
		if diffs := rec.differences(r); len(diffs) > 0 {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists with %s", r.name, strings.Join(diffs, ", "))
		}
		return &csi.CreateSnapshotResponse{Snapshot: rec.csi(s)}, nil
	}
	// The work goes on when the caller's deadline passes: a commit of a
	// large upper or a push can outlast it, and the retry, Aborted until
	// the work is done, then finds the record.
	type outcome struct {
		rec *snapshotRecord
		err error
	}
	done := make(chan outcome, 1)
	work := klog.NewContext(s.ctx, klog.FromContext(ctx))
	go func() {
		var o outcome
		// The slot is free before the outcome is told: a caller's next
		// call must not find it taken. Out of the call's goroutine, a
		// panic is no longer the server's to recover.
		defer func() { done <- o }()
		defer release()
		defer func() {
			if p := recover(); p != nil {
				o.err = status.Errorf(codes.Internal, "making snapshot %s panicked: %v", r.name, p)
			}
			if o.err != nil && ctx.Err() != nil {
				klog.FromContext(ctx).Error(o.err, "Making a snapshot failed after its call returned", "snapshot", r.name, "sourceVolumeID", r.source)
			}
		}()
		o.rec, o.err = s.create(work, r)
	}()
	select {
	case o := <-done:
		if o.err != nil {
			return nil, rpc.Status(ctx, o.err, classify)
		}
		return &csi.CreateSnapshotResponse{Snapshot: o.rec.csi(s)}, nil
	case <-ctx.Done():
		return nil, status.Errorf(codes.DeadlineExceeded, "snapshot %s of volume %s is still being made; a retry returns it when it is done (%v)", r.name, r.source, ctx.Err())
	}
}

// create makes and records snapshot r. What a failure leaves is the
// committed layer, unused, for the store's garbage collection.
func (s *Server) create(ctx context.Context, r *request) (_ *snapshotRecord, err error) {
	log := klog.FromContext(ctx).WithValues("snapshot", r.name, "sourceVolumeID", r.source)
	defer func() {
		if err != nil { // no record: the blobs are no snapshot's
			if rerr := os.RemoveAll(s.records.blobDir(r.name)); rerr != nil {
				log.Error(rerr, "Leaving the blobs of a failed snapshot for the next start")
			}
		}
	}()
	started := time.Now().UTC()
	release, err := s.slots.exclusive(r.source)
	if err != nil {
		return nil, err
	}
	defer release()
	src, err := s.sourceVolume(ctx, r)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := src.done(context.WithoutCancel(ctx)); err != nil {
			log.Error(err, "Leaving the private volume of a snapshot for the next start", "volumeID", src.id)
		}
	}()
	res, err := s.cfg.Store.Commit(ctx, src.id, layers.CommitOptions{
		Compression: r.compression,
		Warn:        func(name, reason string) { log.Info("Left out of the snapshot", "path", name, "reason", reason) },
	})
	if err != nil {
		return nil, err
	}
	rec := &snapshotRecord{
		Name:           r.name,
		SnapshotID:     localID(res.Layer.DiffID, r.name, s.cfg.NodeID),
		SourceVolumeID: r.source,
		LayerSet:       src.layerSet,
		Created:        started,
		Compression:    string(r.compression),
		SizeBytes:      res.Pack.Bytes,
		Repository:     r.repository,
	}
	if err := s.keepBlobs(res, rec); err != nil {
		return nil, err
	}
	if r.repository != "" {
		if err := s.push(ctx, r, res, rec); err != nil {
			return nil, err
		}
	}
	if err := s.records.save(rec); err != nil {
		return nil, err
	}
	log.Info("Made a snapshot", "snapshotID", rec.SnapshotID, "diffID", res.Layer.DiffID, "blobBytes", res.Layer.Size,
		"sizeBytes", rec.SizeBytes, "chain", len(res.Chain), "image", rec.Image, "duration", time.Since(started))
	return rec, nil
}

// committable is the volume a snapshot is committed from; done removes
// it when it is a private one.
type committable struct {
	id, layerSet string
	done         func(context.Context) error
}

// sourceVolume finds the volume to commit for r.source: the volume itself
// when this node composed it, else a private volume of its LayerSet.
func (s *Server) sourceVolume(ctx context.Context, r *request) (committable, error) {
	none := func(context.Context) error { return nil }
	nv, err := s.volumes.Load(r.source)
	if err != nil {
		return committable{}, err
	}
	if nv != nil && nv.Kind == kindEphemeral {
		return committable{}, status.Errorf(codes.InvalidArgument,
			"volume %s is an inline ephemeral volume: its writes go with its pod, and it is no snapshot source", r.source)
	}
	vol, err := s.cfg.Store.Volume(r.source)
	switch {
	case err == nil && nv != nil:
		if vol.ReadOnly || nv.ReadOnly {
			return committable{}, status.Errorf(codes.FailedPrecondition,
				"volume %s is composed read-only on node %s: it has no writable upper to snapshot now; stage it writable first", r.source, s.cfg.NodeID)
		}
		return committable{id: r.source, done: none}, nil
	case err != nil && !errors.Is(err, layers.ErrVolumeNotFound):
		return committable{}, err
	}
	// Not composed on this node: a volume that exists holds nothing
	// written yet, and its snapshot is its LayerSet with an empty layer.
	var info VolumeInfo
	if s.cfg.Lookup != nil {
		if info, err = s.cfg.Lookup(ctx, r.source); err != nil {
			return committable{}, status.Errorf(codes.Unavailable, "looking up volume %s: %v", r.source, err)
		}
	}
	switch {
	case !info.Exists:
		return committable{}, status.Errorf(codes.NotFound, "volume %s does not exist on node %s", r.source, s.cfg.NodeID)
	case info.ReadOnly:
		return committable{}, status.Errorf(codes.FailedPrecondition, "volume %s is read-only: it has no writable upper to snapshot", r.source)
	case info.LayerSet == "":
		return committable{}, status.Errorf(codes.FailedPrecondition, "volume %s names no LayerSet", r.source)
	}
	_, chain, err := s.assemble.Pull(ctx, info.LayerSet)
	if err != nil {
		return committable{}, err
	}
	diffIDs := make([]v1.Hash, len(chain))
	for i, l := range chain {
		diffIDs[i] = l.DiffID
	}
	id := tempPrefix + r.name
	spec := layers.VolumeSpec{ID: id, Layers: diffIDs, Ephemeral: true, Flags: overlay.DefaultFlags, Target: s.tempTarget(id)}
	if _, err := s.cfg.Store.Mount(ctx, spec); err != nil {
		return committable{}, errors.Join(err, s.removeTemp(context.WithoutCancel(ctx), id))
	}
	return committable{id: id, layerSet: info.LayerSet, done: func(ctx context.Context) error { return s.removeTemp(ctx, id) }}, nil
}

// tempTarget is where the private volume id is mounted.
func (s *Server) tempTarget(id string) string {
	return filepath.Join(s.records.Dir(), tempMounts, volumeid.Name(id))
}

// removeTemp removes private volume id and its mount point.
func (s *Server) removeTemp(ctx context.Context, id string) error {
	if err := s.cfg.Store.Unmount(ctx, id, layers.RemoveUpper); err != nil && !errors.Is(err, layers.ErrVolumeNotFound) {
		return err
	}
	if err := os.Remove(s.tempTarget(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// keepBlobs links the committed layer's blob, and those of committed
// layers in the chain, into the snapshot's blob folder, and fills in the
// record's layers. The committed layer's blob is read from there from now
// on, so a push does not depend on the layer staying in the store.
func (s *Server) keepBlobs(res *layers.CommitResult, rec *snapshotRecord) error {
	dir := s.records.blobDir(rec.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	err := s.cfg.Store.Hold(func() error {
		if !s.cfg.Store.HasLayer(res.Layer.DiffID) {
			return status.Errorf(codes.Aborted, "garbage collection removed layer %s before the snapshot kept its blob; retry", res.Layer.DiffID)
		}
		kept := filepath.Join(dir, res.Layer.Digest.Hex)
		if err := linkBlob(res.Layer.Path, kept); err != nil {
			return fmt.Errorf("keep the blob of layer %s: %w", res.Layer.DiffID, err)
		}
		res.Layer.Path = kept
		rec.Layer = chainLayer{DiffID: res.Layer.DiffID.String(), Digest: res.Layer.Digest.String(),
			MediaType: string(res.Layer.MediaType), Size: res.Layer.Size, Kept: true}
		rec.Chain = make([]chainLayer, len(res.Chain))
		for i, d := range res.Chain {
			meta, err := s.cfg.Store.LayerMeta(d)
			if err != nil {
				return err
			}
			l := chainLayer{DiffID: d.String(), Digest: meta.Digest, MediaType: meta.MediaType, Source: meta.Source}
			if !pulled(meta) {
				b, err := s.cfg.Store.LayerBlob(d)
				if err != nil {
					return fmt.Errorf("layer %s of the chain: %w", d, err)
				}
				if err := linkBlob(b.Path, filepath.Join(dir, b.Digest.Hex)); err != nil {
					return fmt.Errorf("keep the blob of layer %s: %w", d, err)
				}
				l.Digest, l.MediaType, l.Size, l.Kept = b.Digest.String(), string(b.MediaType), b.Size, true
			}
			rec.Chain[i] = l
		}
		return nil
	})
	if err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// pulled reports whether a layer came from an image it can be fetched from
// again, rather than from a commit, whose blob only the store keeps.
func pulled(meta layers.LayerMeta) bool {
	return meta.Source != "" && !strings.HasPrefix(meta.Source, layers.CommitSourcePrefix)
}

// push writes the image of the commit to r.repository and makes its
// pinned reference the snapshot's id.
func (s *Server) push(ctx context.Context, r *request, res *layers.CommitResult, rec *snapshotRecord) error {
	img, err := s.cfg.Store.CommitImage(ctx, res, layers.ImageOptions{
		Created: rec.Created,
		Author:  "layerset-csi",
		// The name makes the config, so the digest, the snapshot's own.
		Comment: fmt.Sprintf("snapshot %s of volume %s on node %s", r.name, r.source, s.cfg.NodeID),
		Source:  s.cfg.Source,
	})
	if err != nil {
		return err
	}
	opts := s.cfg.Source
	opts.Keychain = r.keychain
	dst, err := source.ParseDestination(r.repository+":"+tagFor(r.name), opts)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "parameter %s: %v", ParamRepository, err)
	}
	pinned, err := dst.Write(ctx, img)
	if err != nil {
		return fmt.Errorf("push snapshot %s to %s: %w", r.name, dst, err)
	}
	if len(pinned) > maxIDBytes {
		return status.Errorf(codes.InvalidArgument, "parameter %s: the pushed image %s is named by more than %d bytes; use a shorter repository", ParamRepository, pinned, maxIDBytes)
	}
	rec.Image, rec.SnapshotID = pinned, pinned
	return nil
}
