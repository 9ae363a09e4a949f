package archive

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Directory times are set after every entry is written, since creating
// children changes a directory's mtime.

type dirTime struct {
	ts    [2]unix.Timespec
	entry int // entry number that set it
}

func (a *applier) recordDirTimes(name string, ts [2]unix.Timespec) {
	a.dirTimes[name] = dirTime{ts: ts, entry: a.stats.Entries}
}

// dirRemoved notes that the directory tree name was removed by the current
// entry.
func (a *applier) dirRemoved(name string) {
	if a.removed == nil {
		a.removed = make(map[string]int)
	}
	a.removed[name] = a.stats.Entries
	delete(a.dirTimes, name)
}

// stale reports whether name, or a directory above it, was removed after
// dt was recorded.
func (a *applier) stale(name string, dt dirTime) bool {
	if len(a.removed) == 0 {
		return false
	}
	for p := name; p != rootName; p, _ = splitName(p) {
		if e, ok := a.removed[p]; ok && e > dt.entry {
			return true
		}
	}
	return false
}

// applyDirTimes sets the deferred directory times, deepest first.
func (a *applier) applyDirTimes() error {
	names := make([]string, 0, len(a.dirTimes))
	for name, dt := range a.dirTimes {
		if !a.stale(name, dt) {
			names = append(names, name)
		}
	}
	slices.SortFunc(names, func(x, y string) int {
		return cmp.Or(cmp.Compare(depth(y), depth(x)), strings.Compare(x, y))
	})
	for _, name := range names {
		ts := a.dirTimes[name].ts
		if name == rootName {
			if err := futimens(a.root, &ts); err != nil {
				return fmt.Errorf("layer root: %w", err)
			}
			continue
		}
		dir, base := splitName(name)
		parent, err := a.parentDir(dir, existingDirs)
		if err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(parent.fd, base, ts[:], unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("directory %q: %w", name, err)
		}
	}
	return nil
}
