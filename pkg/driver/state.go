package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/layerset/layerset-csi/internal/atomicfile"
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
	ReadOnly  bool   `json:"readOnly,omitempty"`
	// Targets are the bind mounts of a persistent volume.
	Targets []targetRecord `json:"targets,omitempty"`
	Updated time.Time      `json:"updated"`
}

type targetRecord struct {
	Path     string `json:"path"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	Phase    phase  `json:"phase"`
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

// stateDir stores volume records, each replaced atomically.
type stateDir struct{ dir string }

var safeRecordName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// file maps a volume id to its record. Readable ids keep their name, so an
// operator can find a volume's record; others (CSI allows any UTF-8) are
// hashed.
func (s stateDir) file(id string) string {
	name := id
	if !safeRecordName.MatchString(id) || strings.HasPrefix(id, "h-") {
		sum := sha256.Sum256([]byte(id))
		name = "h-" + hex.EncodeToString(sum[:20])
	}
	return filepath.Join(s.dir, name+".json")
}

func (s stateDir) init() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return nil
}

// load returns the record of volume id, or nil if there is none.
func (s stateDir) load(id string) (*volumeRecord, error) {
	r, err := s.read(s.file(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if r.ID != id {
		return nil, fmt.Errorf("volume record %s holds volume %q, not %q", s.file(id), r.ID, id)
	}
	return r, nil
}

func (s stateDir) read(path string) (*volumeRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &volumeRecord{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("volume record %s: %w", path, err)
	}
	if r.ID == "" || (r.Kind != kindEphemeral && r.Kind != kindPersistent) {
		return nil, fmt.Errorf("volume record %s: no volume id or unknown kind %q", path, r.Kind)
	}
	return r, nil
}

// save replaces the record: temporary file, rename, so a crash leaves the
// old record or the new one. Records of persistent volumes are also synced
// (the file, then the directory), as they must outlive a reboot; those of
// inline volumes need not, since the volume itself cannot.
func (s stateDir) save(r *volumeRecord) error {
	r.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := s.file(r.ID)
	if err := writeFileAtomic(s.dir, filepath.Base(path), b, r.Kind == kindPersistent); err != nil {
		return fmt.Errorf("save volume record %s: %w", path, err)
	}
	return nil
}

// remove deletes the record of volume id; a missing record is not an
// error. With durable the deletion is synced, as a persistent volume's
// record must not come back after a power loss.
func (s stateDir) remove(id string, durable bool) error {
	if err := os.Remove(s.file(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove volume record: %w", err)
	}
	if !durable {
		return nil
	}
	return atomicfile.SyncDir(s.dir)
}

// removeTemp deletes the temporary files of saves a crash interrupted.
// Only for start-up: at any other time a save may be using one.
func (s stateDir) removeTemp() error {
	tmps, err := filepath.Glob(filepath.Join(s.dir, atomicfile.TempGlob))
	if err != nil {
		return err
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove leftover %s: %w", t, err)
		}
	}
	return nil
}

// list returns every record. A record that cannot be read is reported in
// bad and otherwise skipped, so one damaged file does not stop the node
// from serving the others.
func (s stateDir) list() (records []*volumeRecord, bad []error, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list volume records: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || filepath.Ext(name) != ".json" {
			continue
		}
		r, err := s.read(filepath.Join(s.dir, name))
		if err != nil {
			bad = append(bad, err)
			continue
		}
		records = append(records, r)
	}
	return records, bad, nil
}
