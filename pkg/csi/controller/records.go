package controller

import (
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/internal/record"
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
	// Sized marks a record made since volumes have a size limit: its
	// size is SizeBytes, 0 for none, and its volume context carries
	// names.ContextSize. A record without it was made before, and keeps
	// giving the answer it gave then (no capacity, the upperSizeHint
	// context key), so a retried CreateVolume still matches its PV.
	Sized bool `json:"sized,omitempty"`
	// SizeBytes is the limit of the volume's upper: the capacity range's
	// size, else the StorageClass's deprecated upperSizeHint, else the
	// LayerSet's defaultSize; ControllerExpandVolume raises it.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
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

// openRecords opens the records under stateDir.
func openRecords(stateDir string) (*record.Store[createdVolume], error) {
	return record.Open[createdVolume](filepath.Join(stateDir, controllerRecordDir), record.Options[createdVolume]{StaleTemp: staleTempAge})
}

// lockVolume takes id's in-flight slot and reads its record, nil when
// there is none; the caller releases the slot.
func (c *Server) lockVolume(id string) (*createdVolume, func(), error) {
	release, err := c.inflight.Acquire(id)
	if err != nil {
		return nil, nil, err
	}
	v, err := c.volumes.Load(id)
	if err != nil {
		release()
		return nil, nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	}
	return v, release, nil
}
