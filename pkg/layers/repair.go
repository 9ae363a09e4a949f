package layers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// repair brings the store back to a consistent state after a crash:
// leftovers of interrupted imports and deletes are removed, every
// directory's short id gets its l/ link back, and links that lead nowhere
// are dropped. It runs under the exclusive lock.
func (s *Store) repair(ctx context.Context) error {
	log := klog.FromContext(ctx)
	for _, d := range []string{stagingDir, trashDir, spareDir} {
		if err := emptyDir(s.path(d)); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return err
	}
	want := map[string]string{} // short id -> directory name
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || name == linkDir || strings.HasPrefix(name, ".") {
			continue
		}
		// Volumes are removed before their init layer, and created after
		// it: an init layer alone is the leftover of either.
		if base, ok := strings.CutSuffix(name, initSuffix); ok && strings.HasPrefix(name, volumePrefix) {
			if _, err := os.Stat(s.path(base)); errors.Is(err, os.ErrNotExist) {
				log.Info("Removing init layer of a volume that no longer exists", "dir", name)
				if err := os.RemoveAll(s.path(name)); err != nil {
					return err
				}
				continue
			}
		}
		// An init layer swap cut short leaves its next content beside it.
		if err := os.RemoveAll(s.path(name, newDiffName)); err != nil {
			return err
		}
		id, err := readLink(s.path(name))
		if err != nil {
			log.Info("Store directory has no usable short id; giving it a new one", "dir", name, "err", err)
			if id, err = s.relink(name); err != nil {
				return err
			}
		}
		if other, dup := want[id]; dup {
			// Two directories claim one id (a hand copy): keep the first.
			log.Info("Short id claimed twice; giving the second a new one", "id", id, "dirs", []string{other, name})
			if id, err = s.relink(name); err != nil {
				return err
			}
		}
		want[id] = name
	}

	links, err := os.ReadDir(s.path(linkDir))
	if err != nil {
		return err
	}
	for _, l := range links {
		target, err := os.Readlink(s.path(linkDir, l.Name()))
		if err == nil && want[l.Name()] != "" && target == linkTarget(want[l.Name()]) {
			delete(want, l.Name())
			continue
		}
		if err := os.Remove(s.path(linkDir, l.Name())); err != nil {
			return err
		}
		if want[l.Name()] == "" {
			log.V(2).Info("Removed stale short link", "id", l.Name())
		}
	}
	for id, name := range want {
		if err := os.Symlink(linkTarget(name), s.path(linkDir, id)); err != nil {
			return fmt.Errorf("restore short link %s for %s: %w", id, name, err)
		}
		log.Info("Restored short link", "id", id, "dir", name)
	}
	return nil
}

func linkTarget(dirName string) string { return filepath.Join("..", dirName, diffName) }

// relink draws a fresh short id for a directory and records it.
func (s *Store) relink(name string) (string, error) {
	id, err := s.reserveLink(name)
	if err != nil {
		return "", err
	}
	// The link just reserved is rebuilt with the others below.
	if err := os.Remove(s.path(linkDir, id)); err != nil {
		return "", err
	}
	if err := writeFileAtomic(s.path(name, linkName), []byte(id), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
