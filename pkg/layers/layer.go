package layers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const (
	metaName     = "layer.json"
	lastUsedName = "last-used"
)

// LayerMeta is what the store records about a layer beside its content.
type LayerMeta struct {
	DiffID    string    `json:"diffID"`
	Digest    string    `json:"digest,omitempty"`
	MediaType string    `json:"mediaType,omitempty"`
	Source    string    `json:"source,omitempty"`
	Size      int64     `json:"size"`    // bytes on disk, uncompressed
	Entries   int       `json:"entries"` // tar entries applied
	Imported  time.Time `json:"imported"`
}

// Layer describes a stored layer.
type Layer struct {
	LayerMeta
	Dir      string    `json:"dir"`
	LinkID   string    `json:"linkID"`
	LastUsed time.Time `json:"lastUsed"`
	Users    int       `json:"users"`
}

// layerDirName is the directory of a layer: the hex of its uncompressed
// digest, so every chain with the same content finds the same directory.
func layerDirName(diffID v1.Hash) (string, error) {
	if diffID.Algorithm != "sha256" || !isLayerDirName(diffID.Hex) {
		return "", fmt.Errorf("%w: layer digest %q is not a sha256 digest", ErrInvalid, diffID)
	}
	return diffID.Hex, nil
}

// isLayerDirName reports whether name is 64 lowercase hex digits. A loop,
// not strings.Trim with a cutset, which builds its set at every call: a
// warm mount checks every layer of its chain twice.
func isLayerDirName(name string) bool {
	if len(name) != 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// HasLayer reports whether the layer with this uncompressed digest is stored.
func (s *Store) HasLayer(diffID v1.Hash) bool {
	name, err := layerDirName(diffID)
	if err != nil {
		return false
	}
	_, err = os.Stat(s.path(name, linkName))
	return err == nil
}

// knownLayer is HasLayer answered from memory when the layer was used
// before: a warm mount of a long chain would otherwise stat every layer.
// Only another process's GC can make it wrong, and Mount then forgets
// what it removed (forgetRemovedLayers).
func (s *Store) knownLayer(diffID v1.Hash) bool {
	if name, err := layerDirName(diffID); err == nil {
		if _, ok := s.links.Load(name); ok {
			return true
		}
	}
	return s.HasLayer(diffID)
}

// HasLayers reports whether every layer, by uncompressed digest, is
// stored, from memory for the layers used before (see knownLayer): then a
// caller has nothing to Import.
func (s *Store) HasLayers(diffIDs []v1.Hash) bool {
	if s.chains.get(diffIDs) != nil {
		return true // mounted in this epoch: every layer was there
	}
	for _, d := range diffIDs {
		if !s.knownLayer(d) {
			return false
		}
	}
	return true
}

// forgetRemovedLayers drops the remembered short ids of those layers that
// are no longer on disk, and reports whether there were any.
func (s *Store) forgetRemovedLayers(diffIDs []v1.Hash) bool {
	removed := false
	for _, d := range diffIDs {
		if name, err := layerDirName(d); err == nil && !s.HasLayer(d) {
			s.links.Delete(name)
			removed = true
		}
	}
	if removed {
		s.chains.invalidate()
	}
	return removed
}

// readLink returns the short id in dir/link, validated.
func readLink(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, linkName))
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if !validLinkID(id) {
		return "", fmt.Errorf("%s: malformed short id %q", filepath.Join(dir, linkName), id)
	}
	return id, nil
}

// layerLink returns a stored layer's short id, from memory after the first
// time: a mount of a long chain would otherwise read one file per layer.
func (s *Store) layerLink(name string) (string, error) {
	if id, ok := s.links.Load(name); ok {
		return id.(string), nil
	}
	id, err := readLink(s.path(name))
	if err != nil {
		return "", err
	}
	s.links.Store(name, id)
	return id, nil
}

// reserveLink creates l/<new id> -> ../<dirName>/diff and returns the id.
// Creating the symlink is the collision check: a taken id fails with EEXIST
// and another is drawn.
func (s *Store) reserveLink(dirName string) (string, error) {
	return s.reserveLinkPreferring(dirName, "")
}

// reserveLinkPreferring reserves id when it is free, else a fresh one: a
// spare skeleton keeps the ids its link files already hold.
func (s *Store) reserveLinkPreferring(dirName, id string) (string, error) {
	for range 8 {
		if id == "" {
			var err error
			if id, err = newLinkID(); err != nil {
				return "", err
			}
		}
		err := os.Symlink(filepath.Join("..", dirName, diffName), s.path(linkDir, id))
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("create short link for %s: %w", dirName, err)
		}
		id = ""
	}
	return "", fmt.Errorf("create short link for %s: no free id after 8 draws", dirName)
}

func (s *Store) readMeta(name string) (LayerMeta, error) {
	var m LayerMeta
	b, err := os.ReadFile(s.path(name, metaName))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", s.path(name, metaName), err)
	}
	return m, nil
}

// touch records that a layer was used now; garbage collection removes the
// least recently used layers first.
func (s *Store) touch(name string) error {
	now := time.Now()
	p := s.path(name, lastUsedName)
	if err := os.Chtimes(p, now, now); !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return touchFile(p)
}

// Layers lists the stored layers with their users: volumes, mounted or
// persistent, whose lower chain names them.
func (s *Store) Layers(ctx context.Context) ([]Layer, error) {
	unlock, err := s.lock(shared)
	if err != nil {
		return nil, err
	}
	defer unlock()
	users, err := s.layerUsers()
	if err != nil {
		return nil, err
	}
	return s.layers(ctx, users)
}

func (s *Store) layers(ctx context.Context, users map[string]int) ([]Layer, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	var out []Layer
	for _, e := range entries {
		if !e.IsDir() || !isLayerDirName(e.Name()) {
			continue
		}
		l := Layer{Dir: s.path(e.Name())}
		if l.LayerMeta, err = s.readMeta(e.Name()); err != nil {
			return nil, fmt.Errorf("read layer %s: %w", e.Name(), err)
		}
		if l.LinkID, err = readLink(l.Dir); err != nil {
			return nil, fmt.Errorf("read layer %s: %w", e.Name(), err)
		}
		if fi, err := os.Stat(s.path(e.Name(), lastUsedName)); err == nil {
			l.LastUsed = fi.ModTime()
		}
		l.Users = users[l.LinkID]
		out = append(out, l)
	}
	return out, nil
}
