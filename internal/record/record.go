// Package record keeps one JSON record per volume in a directory, each
// replaced atomically, named by the one volume id rule (package
// volumeid). The node keeps what it mounted in one, the controller what
// it created in another.
package record

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/volumeid"
)

// Options configure a Store.
type Options[T any] struct {
	// Check validates a record read from disk; nil accepts any.
	Check func(*T) error
	// StaleTemp is how old a temporary file must be for Open to remove
	// it: zero removes every one, for a directory only this process
	// writes; a directory shared with another process needs an age past
	// which no save of theirs can still be running.
	StaleTemp time.Duration
	// Spares bounds how many files of replaced and removed records are
	// kept, hidden, for later saves to write over (see spare.go): where
	// records churn, a save then creates no file. Zero keeps none.
	Spares int
}

// Store holds the records of type T. A record is a JSON object whose "id"
// field is the volume id it is stored under.
type Store[T any] struct {
	dir    string
	opts   Options[T]
	spares spares
}

// recordPerm is the mode of record files.
const recordPerm = 0o600

// Open creates dir if needed and removes the temporary files of saves a
// crash interrupted.
func Open[T any](dir string, opts Options[T]) (*Store[T], error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create record directory: %w", err)
	}
	tmps, err := filepath.Glob(filepath.Join(dir, atomicfile.TempGlob))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, t := range tmps {
		fi, err := os.Lstat(t)
		if err != nil || (opts.StaleTemp > 0 && now.Sub(fi.ModTime()) < opts.StaleTemp) {
			continue
		}
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove leftover %s: %w", t, err)
		}
	}
	return &Store[T]{dir: dir, opts: opts, spares: spares{max: opts.Spares}}, nil
}

// Dir is the directory the records live in.
func (s *Store[T]) Dir() string { return s.dir }

// Path is the file of volume id's record.
func (s *Store[T]) Path(id string) string { return filepath.Join(s.dir, volumeid.Name(id)+".json") }

// Load returns the record of volume id, or nil if there is none.
func (s *Store[T]) Load(id string) (*T, error) {
	r, recorded, err := s.read(s.Path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if recorded != id {
		return nil, fmt.Errorf("volume record %s holds volume %q, not %q", s.Path(id), recorded, id)
	}
	return r, nil
}

func (s *Store[T]) read(path string) (*T, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	var head struct {
		ID string `json:"id"`
	}
	r := new(T)
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, "", fmt.Errorf("volume record %s: %w", path, err)
	}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, "", fmt.Errorf("volume record %s: %w", path, err)
	}
	if head.ID == "" {
		return nil, "", fmt.Errorf("volume record %s: no volume id", path)
	}
	if s.opts.Check != nil {
		if err := s.opts.Check(r); err != nil {
			return nil, "", fmt.Errorf("volume record %s: %w", path, err)
		}
	}
	return r, head.ID, nil
}

// Save replaces the record of volume id: a crash leaves the old record or
// the new one. Durable saves are synced (the file, then the directory), so
// they also survive a power loss.
func (s *Store[T]) Save(id string, r *T, durability atomicfile.Durability) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := s.Path(id)
	if err := s.write(path, b, durability); err != nil {
		return fmt.Errorf("save volume record %s: %w", path, err)
	}
	if durability == atomicfile.Durable {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return fmt.Errorf("save volume record %s: %w", path, err)
		}
	}
	return nil
}

func (s *Store[T]) write(path string, b []byte, durability atomicfile.Durability) error {
	if s.opts.Spares > 0 {
		return s.saveThroughSpare(path, b, durability)
	}
	return atomicfile.WriteFiles(map[string][]byte{path: b}, recordPerm, durability)
}

// Remove deletes the record of volume id; a missing record is not an
// error. A Durable removal is synced, so the record does not come back
// after a power loss.
func (s *Store[T]) Remove(id string, durability atomicfile.Durability) error {
	if !s.removeToSpare(s.Path(id)) {
		if err := removeIfThere(s.Path(id)); err != nil {
			return fmt.Errorf("remove volume record: %w", err)
		}
	}
	if durability == atomicfile.Volatile {
		return nil
	}
	return atomicfile.SyncDir(s.dir)
}

// List returns every record. A record that cannot be read is reported in
// bad and otherwise skipped, so one damaged file does not stop the caller
// from serving the others.
func (s *Store[T]) List() (records []*T, bad []error, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list volume records: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || filepath.Ext(name) != ".json" {
			continue
		}
		r, _, err := s.read(filepath.Join(s.dir, name))
		if err != nil {
			bad = append(bad, err)
			continue
		}
		records = append(records, r)
	}
	return records, bad, nil
}
