package snapshot

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/internal/record"
	"github.com/layerset/layerset-csi/pkg/volumeid"
)

// snapshotRecord is the node's record of one snapshot, kept in
// <StateDir>/snapshots/<name>.json; it exists only for a snapshot that is
// whole.
type snapshotRecord struct {
	// Name is the CSI snapshot name, the record's key (record.Store keys
	// records by their "id" field).
	Name           string `json:"id"`
	SnapshotID     string `json:"snapshotID"`
	SourceVolumeID string `json:"sourceVolumeID"`
	// LayerSet is what the source volume was composed from, when the
	// snapshot was made of a volume this node had not composed.
	LayerSet string `json:"layerSet,omitempty"`
	// Created is when the commit began: the upper as of then.
	Created time.Time `json:"created"`
	// Layer is the committed layer, on top of Chain (bottom first).
	Layer       chainLayer   `json:"layer"`
	Chain       []chainLayer `json:"chain"`
	Compression string       `json:"compression"`
	// SizeBytes is the restore size: the bytes of file content in Layer.
	SizeBytes int64 `json:"sizeBytes"`
	// Repository is where the image was pushed, Image its pinned
	// reference (the snapshot id); both empty for a node-local snapshot.
	Repository string `json:"repository,omitempty"`
	Image      string `json:"image,omitempty"`
}

// chainLayer is one layer of a snapshot's image.
type chainLayer struct {
	DiffID    string `json:"diffID"`
	Digest    string `json:"digest,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
	Size      int64  `json:"size,omitempty"` // of the blob
	// Source is the image a pulled layer came from (LayerMeta.Source);
	// Kept says the snapshot's blob folder holds its blob (a committed
	// layer, which no registry has).
	Source string `json:"source,omitempty"`
	Kept   bool   `json:"kept,omitempty"`
}

func checkSnapshotRecord(r *snapshotRecord) error {
	if r.SnapshotID == "" || r.SourceVolumeID == "" || r.Layer.DiffID == "" {
		return fmt.Errorf("snapshot record of %q is incomplete", r.Name)
	}
	return nil
}

func (r *snapshotRecord) csi(s *Server) *csi.Snapshot {
	snap := &csi.Snapshot{
		SizeBytes:      r.SizeBytes,
		SnapshotId:     r.SnapshotID,
		SourceVolumeId: r.SourceVolumeID,
		CreationTime:   timestamppb.New(r.Created),
		ReadyToUse:     true,
	}
	if r.Image == "" {
		snap.AccessibleTopology = []*csi.Topology{s.topology()}
	}
	return snap
}

// snapshotRecords are the records and the folders of kept blobs beside them.
type snapshotRecords struct {
	*record.Store[snapshotRecord]
	blobs string // <dir>/blobs
}

const (
	snapshotDir = "snapshots"
	blobsDir    = "blobs"
	// tempMounts holds the mount points of the private volumes snapshots
	// of volumes never composed here are committed from.
	tempMounts = ".mnt"
)

func openSnapshotRecords(stateDir string) (snapshotRecords, error) {
	dir := filepath.Join(stateDir, snapshotDir)
	s, err := record.Open(dir, record.Options[snapshotRecord]{Check: checkSnapshotRecord})
	if err != nil {
		return snapshotRecords{}, err
	}
	blobs := filepath.Join(dir, blobsDir)
	if err := os.MkdirAll(blobs, 0o700); err != nil {
		return snapshotRecords{}, err
	}
	return snapshotRecords{Store: s, blobs: blobs}, nil
}

// blobDir is the folder of the blobs snapshot name keeps.
func (s snapshotRecords) blobDir(name string) string {
	return filepath.Join(s.blobs, volumeid.Name(name))
}

func (s snapshotRecords) save(r *snapshotRecord) error { return s.Save(r.Name, r, atomicfile.Durable) }

// list returns every record, sorted by snapshot id. Records that cannot be
// read are left out; they are reported by New.
func (s snapshotRecords) list() ([]*snapshotRecord, error) {
	recs, _, err := s.List()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b *snapshotRecord) int {
		switch {
		case a.SnapshotID < b.SnapshotID:
			return -1
		case a.SnapshotID > b.SnapshotID:
			return 1
		}
		return 0
	})
	return recs, nil
}

// byID returns the record of snapshot id, or nil.
func (s snapshotRecords) byID(id string) (*snapshotRecord, error) {
	recs, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		if r.SnapshotID == id {
			return r, nil
		}
	}
	return nil, nil
}

// remove forgets snapshot r: the record first, so that a crash leaves at
// worst a blob folder without a record, which New removes.
func (s snapshotRecords) remove(r *snapshotRecord) error {
	if err := s.Remove(r.Name, atomicfile.Durable); err != nil {
		return err
	}
	return os.RemoveAll(s.blobDir(r.Name))
}

// sweepBlobs removes the blob folders of names with no record: those of
// snapshots a crash interrupted, before their record, or after its removal.
func (s snapshotRecords) sweepBlobs() ([]string, error) {
	recs, bad, err := s.List()
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		// A record that cannot be read may still be a snapshot: keep
		// every folder rather than guess which is its.
		return nil, nil
	}
	keep := map[string]bool{}
	for _, r := range recs {
		keep[volumeid.Name(r.Name)] = true
	}
	entries, err := os.ReadDir(s.blobs)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.blobs, e.Name())); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

// linkBlob makes dst a hard link to src, or, across filesystems, a synced
// copy. An existing dst is kept: blobs are named by their digest.
func linkBlob(src, dst string) error {
	if _, err := os.Lstat(dst); err == nil {
		return nil
	}
	err := os.Link(src, dst)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return nil
	}
	var le *os.LinkError
	if !errors.As(err, &le) {
		return err
	}
	return copyFile(src, dst)
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }() // read only
	tmp := dst + ".partial"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return errors.Join(err, out.Close())
	}
	if err := out.Sync(); err != nil {
		return errors.Join(err, out.Close())
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// forever is a StaleTemp no temporary file reaches: a record directory
// another service writes is opened without removing anything.
const forever = time.Duration(math.MaxInt64)

// nodeVolume is what the snapshot service reads of the node service's
// record of a volume (pkg/csi/node, StateDir/<id>.json): its kind and
// mode. Only these fields are read.
type nodeVolume struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"` // "ephemeral" or "persistent"
	ReadOnly bool   `json:"readOnly"`
}

const kindEphemeral = "ephemeral"

// openNodeRecords opens the node service's records for reading.
func openNodeRecords(stateDir string) (*record.Store[nodeVolume], error) {
	return record.Open(stateDir, record.Options[nodeVolume]{StaleTemp: forever})
}
