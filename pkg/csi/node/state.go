package node

import (
	"fmt"
	"slices"
	"time"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/internal/record"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

// volumeKind tells the two lifecycles apart.
type volumeKind string

const (
	// kindEphemeral is an inline volume: composed at its one target by
	// NodePublishVolume, deleted with its upper by NodeUnpublishVolume.
	kindEphemeral volumeKind = "ephemeral"
	// kindPersistent is a PersistentVolume: composed at the staging path,
	// bind-mounted to each target; its upper outlives unstaging.
	kindPersistent volumeKind = "persistent"
)

// phase is how far an operation got. A phase ending in -ing was written
// before the operation touched the mount table and is replaced when it
// completes, so after a crash it marks what to finish or undo.
type phase string

const (
	phasePublishing   phase = "publishing"
	phasePublished    phase = "published"
	phaseUnpublishing phase = "unpublishing"
	phaseStaging      phase = "staging"
	phaseStaged       phase = "staged"
	phaseUnstaging    phase = "unstaging"
	// phaseUnstaged is a persistent volume with nothing mounted whose
	// upper the store keeps for the next NodeStageVolume on this node.
	phaseUnstaged phase = "unstaged"
)

// volumeRecord is what the node knows about one volume, kept in
// StateDir/<id>.json.
type volumeRecord struct {
	ID       string     `json:"id"`
	Kind     volumeKind `json:"kind"`
	LayerSet string     `json:"layerSet"`
	Phase    phase      `json:"phase"`
	// MountPath is where the composed overlay is mounted: the target of
	// an ephemeral volume, the staging path of a persistent one.
	MountPath string `json:"mountPath,omitempty"`
	// MountDev is the device of the mount made at MountPath (see
	// overlay.MountDev), so that teardown unmounts that mount and no other.
	MountDev uint64 `json:"mountDev,omitempty"`
	// Flags are the attributes the volume was mounted with at MountPath;
	// a persistent volume's binds start from them.
	Flags    overlay.Flags `json:"flags,omitempty"`
	ReadOnly bool          `json:"readOnly,omitempty"`
	// Targets are the bind mounts of a persistent volume.
	Targets []targetRecord `json:"targets,omitempty"`
	Updated time.Time      `json:"updated"`
}

type targetRecord struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	Phase    phase  `json:"phase"`
	// MountDev is the device of the bind mount at Path; see volumeRecord.
	MountDev uint64 `json:"mountDev,omitempty"`
}

// target returns the record of the bind mount at path, or nil.
func (r *volumeRecord) target(path string) *targetRecord {
	for i := range r.Targets {
		if r.Targets[i].Path == path {
			return &r.Targets[i]
		}
	}
	return nil
}

// setTarget adds or replaces the record of a bind mount.
func (r *volumeRecord) setTarget(t targetRecord) {
	if old := r.target(t.Path); old != nil {
		*old = t
		return
	}
	r.Targets = append(r.Targets, t)
}

func (r *volumeRecord) dropTarget(path string) {
	r.Targets = slices.DeleteFunc(r.Targets, func(t targetRecord) bool { return t.Path == path })
}

// records stores the volume records in StateDir. Records of persistent
// volumes are synced, as they must outlive a reboot; those of inline
// volumes need not, since the volume itself cannot.
type records struct{ *record.Store[volumeRecord] }

func openRecords(dir string) (records, error) {
	s, err := record.Open(dir, record.Options[volumeRecord]{Check: checkRecord, Spares: recordSpares})
	return records{s}, err
}

// recordSpares is how many removed records' files the node keeps to write
// new ones over: every pod start saves two records and every pod stop
// removes one, and a file created for each would cost an inode
// allocation, slow on ext4 where they churn (see record.Options.Spares).
const recordSpares = 32

func checkRecord(r *volumeRecord) error {
	if r.Kind != kindEphemeral && r.Kind != kindPersistent {
		return fmt.Errorf("unknown volume kind %q", r.Kind)
	}
	return nil
}

func (r *volumeRecord) durability() atomicfile.Durability {
	if r.Kind == kindPersistent {
		return atomicfile.Durable
	}
	return atomicfile.Volatile
}

// load returns the record of volume id, or nil if there is none.
func (s records) load(id string) (*volumeRecord, error) { return s.Load(id) }

// save replaces the record of r.ID.
func (s records) save(r *volumeRecord) error {
	r.Updated = time.Now().UTC()
	return s.Save(r.ID, r, r.durability())
}

// remove forgets the volume of r.
func (s records) remove(r *volumeRecord) error { return s.Remove(r.ID, r.durability()) }

// list returns every readable record; see record.Store.List.
func (s records) list() ([]*volumeRecord, []error, error) { return s.List() }
