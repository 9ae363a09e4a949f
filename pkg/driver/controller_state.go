package driver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/layerset/layerset-csi/internal/atomicfile"
)

// createdVolume is the controller's record of a volume it created, kept in
// <StateDir>/controller/<id>.json.
type createdVolume struct {
	ID     string      `json:"id"`
	Name   string      `json:"name"`
	Params classParams `json:"params"`
	// RequiredBytes and LimitBytes are the capacity range asked for; a
	// retry must ask for the same.
	RequiredBytes int64 `json:"requiredBytes,omitempty"`
	LimitBytes    int64 `json:"limitBytes,omitempty"`
	// Writable volumes were asked for with a writable access mode; Node
	// is where such a volume's upper lives, "" when the CO gave no
	// topology and any node may compose it.
	Writable bool      `json:"writable,omitempty"`
	Node     string    `json:"node,omitempty"`
	Created  time.Time `json:"created"`
}

// controllerRecordDir is the subdirectory of StateDir holding the records,
// so that a node service given the same StateDir never mistakes them for
// its own.
const controllerRecordDir = "controller"

// staleTempAge is how old a temporary file must be before start-up removes
// it: younger ones may belong to a save in progress in another process
// sharing the directory.
const staleTempAge = 10 * time.Minute

// createdVolumes stores the records, each replaced atomically.
type createdVolumes struct{ dir string }

func (s createdVolumes) path(id string) string { return filepath.Join(s.dir, id+".json") }

// init creates the directory and removes the temporary files of saves a
// crash interrupted.
func (s createdVolumes) init(now time.Time) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create volume record directory: %w", err)
	}
	tmps, err := filepath.Glob(filepath.Join(s.dir, atomicfile.TempGlob))
	if err != nil {
		return err
	}
	for _, t := range tmps {
		fi, err := os.Lstat(t)
		if err != nil || now.Sub(fi.ModTime()) < staleTempAge {
			continue
		}
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove leftover %s: %w", t, err)
		}
	}
	return nil
}

// load returns the record of volume id, or nil if there is none. Callers
// check the id with isControllerVolumeID first.
func (s createdVolumes) load(id string) (*createdVolume, error) {
	b, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read volume record: %w", err)
	}
	var v createdVolume
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("volume record %s: %w", s.path(id), err)
	}
	if v.ID != id {
		return nil, fmt.Errorf("volume record %s holds volume %q, not %q", s.path(id), v.ID, id)
	}
	return &v, nil
}

// save replaces the record of v.ID.
func (s createdVolumes) save(v *createdVolume) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(s.dir, v.ID+".json", b, true); err != nil {
		return fmt.Errorf("save volume record: %w", err)
	}
	return nil
}

// remove deletes the record of volume id; a missing record is not an error.
func (s createdVolumes) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove volume record: %w", err)
	}
	return atomicfile.SyncDir(s.dir)
}

// writeFileAtomic replaces dir/name with data: after a crash the file
// holds the old data or the new. With durable, the file is synced before
// it moves into place and dir after, so once writeFileAtomic returns the
// new data also survives a power loss.
func writeFileAtomic(dir, name string, data []byte, durable bool) error {
	if err := atomicfile.WriteFiles(map[string][]byte{filepath.Join(dir, name): data}, 0o600, durable); err != nil {
		return err
	}
	if durable {
		return atomicfile.SyncDir(dir)
	}
	return nil
}
