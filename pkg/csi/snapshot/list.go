package snapshot

import (
	"context"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/csi/rpc"
)

// DeleteSnapshot forgets a snapshot: its record and its kept blobs. The
// committed layer is left to the store's garbage collection, which keeps
// it while a volume's chain names it; a pushed image stays in its
// registry. An unknown id is OK.
func (s *Server) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if err := rpc.RequireField("snapshot_id", id); err != nil {
		return nil, err
	}
	if !wellFormedID(id) {
		return &csi.DeleteSnapshotResponse{}, nil // none of ours
	}
	rec, err := s.records.byID(id)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", id, err)
	}
	if rec == nil {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	release, err := s.names.Acquire(rec.Name)
	if err != nil {
		return nil, status.Errorf(codes.Aborted, "snapshot %s is being made or deleted; retry when that is done", id)
	}
	defer release()
	// Read again under the slot: a call may have deleted it meanwhile.
	if rec, err = s.records.Load(rec.Name); err != nil {
		return nil, status.Errorf(codes.Internal, "snapshot %s: %v", id, err)
	}
	if rec == nil || rec.SnapshotID != id {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := s.records.remove(rec); err != nil {
		return nil, status.Errorf(codes.Internal, "delete snapshot %s: %v", id, err)
	}
	klog.FromContext(ctx).Info("Deleted a snapshot", "snapshot", rec.Name, "snapshotID", id, "diffID", rec.Layer.DiffID)
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots lists this node's snapshots, those of one id or one
// source volume if asked, in id order, max_entries at a time after
// starting_token (the last id of the previous page).
func (s *Server) ListSnapshots(_ context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	if req.GetMaxEntries() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "max_entries %d is negative", req.GetMaxEntries())
	}
	token := req.GetStartingToken()
	if token != "" && !wellFormedID(token) {
		return nil, status.Errorf(codes.Aborted, "starting_token %q is none this plugin gave: list again without it", token)
	}
	recs, err := s.records.list()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "list snapshots: %v", err)
	}
	resp := &csi.ListSnapshotsResponse{}
	for _, r := range recs {
		switch {
		case req.GetSnapshotId() != "" && r.SnapshotID != req.GetSnapshotId(),
			req.GetSourceVolumeId() != "" && r.SourceVolumeID != req.GetSourceVolumeId(),
			token != "" && r.SnapshotID <= token:
			continue
		}
		if n := req.GetMaxEntries(); n > 0 && len(resp.Entries) == int(n) {
			resp.NextToken = resp.Entries[n-1].GetSnapshot().GetSnapshotId()
			break
		}
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: r.csi(s)})
	}
	return resp, nil
}
