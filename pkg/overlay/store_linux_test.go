package overlay

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// store is a real overlay2 store in a temporary directory: R/<id>/diff per
// layer and R/l/<26-char ID> -> ../<id>/diff, as Docker lays it out.
type store struct {
	t   testing.TB
	dir string
	n   int
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func newStore(t testing.TB) *store {
	t.Helper()
	return newStoreIn(t, t.TempDir())
}

func newStoreIn(t testing.TB, dir string) *store {
	t.Helper()
	s := &store{t: t, dir: dir}
	mkdir(t, filepath.Join(s.dir, "l"))
	return s
}

// ids returns a Docker-style 64-hex layer directory name and a 26-character
// base32 short ID, both derived from the store's layer counter.
func (s *store) ids() (long, short string) {
	s.n++
	sum := sha256.Sum256([]byte(fmt.Sprint(s.n)))
	return hex.EncodeToString(sum[:]), base32.StdEncoding.EncodeToString(sum[:])[:26]
}

// layer creates a layer, lets fill populate its diff directory and returns
// its path relative to the store, "l/<short ID>".
func (s *store) layer(fill func(diff string)) string {
	long, short := s.ids()
	return s.layerNamed(long, short, fill)
}

func (s *store) layerNamed(long, short string, fill func(diff string)) string {
	s.t.Helper()
	diff := filepath.Join(s.dir, long, "diff")
	mkdir(s.t, diff)
	if fill != nil {
		fill(diff)
	}
	link := filepath.Join("l", short)
	if err := os.Symlink(filepath.Join("..", long, "diff"), filepath.Join(s.dir, link)); err != nil {
		s.t.Fatal(err)
	}
	return link
}

// upper creates a container directory with diff and work and returns their
// paths relative to the store.
func (s *store) upper(fill func(diff string)) (upper, work string) {
	s.t.Helper()
	long, _ := s.ids()
	mkdir(s.t, filepath.Join(s.dir, long, "diff"))
	mkdir(s.t, filepath.Join(s.dir, long, "work"))
	if fill != nil {
		fill(filepath.Join(s.dir, long, "diff"))
	}
	return filepath.Join(long, "diff"), filepath.Join(long, "work")
}

// numbered creates n layers, layer i holding a file "layer<i>" and a file
// "top" that both say i; it returns them uppermost (i = 0) first.
func (s *store) numbered(n int) []string {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = s.layer(func(diff string) {
			writeFile(s.t, filepath.Join(diff, fmt.Sprintf("layer%d", i)), fmt.Sprint(i))
			writeFile(s.t, filepath.Join(diff, "top"), fmt.Sprint(i))
		})
	}
	return ls
}

// target returns an empty directory to mount on and unmounts whatever is
// mounted there when the test ends, before the directory is removed.
func target(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "merged")
	mkdir(t, dir)
	t.Cleanup(func() {
		if err := Unmount(context.Background(), dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}

func mkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// whiteout makes path an overlayfs whiteout: a 0/0 character device.
func whiteout(t testing.TB, path string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := unix.Mknod(path, unix.S_IFCHR, int(unix.Mkdev(0, 0))); err != nil {
		t.Fatal(err)
	}
}

// opaque marks dir so that overlayfs hides the lower layers' contents of it.
func opaque(t testing.TB, dir string) {
	t.Helper()
	mkdir(t, dir)
	if err := unix.Setxattr(dir, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
}

// tree returns every entry under root: directories as "dir/" -> "", files
// as path -> contents, anything else as path -> its type.
func tree(t testing.TB, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		switch {
		case d.IsDir():
			got[rel+"/"] = ""
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			got[rel] = string(b)
		default:
			got[rel] = d.Type().String()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func assertTree(t testing.TB, root string, want map[string]string) {
	t.Helper()
	got := tree(t, root)
	if maps.Equal(got, want) {
		return
	}
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if w, ok := want[k]; !ok {
			diff = append(diff, fmt.Sprintf("  unexpected %s = %q", k, got[k]))
		} else if w != got[k] {
			diff = append(diff, fmt.Sprintf("  %s = %q, want %q", k, got[k], w))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[k]; !ok {
			diff = append(diff, fmt.Sprintf("  missing %s = %q", k, want[k]))
		}
	}
	t.Errorf("%s:\n%s", root, strings.Join(diff, "\n"))
}

// readFile reads a file that must exist.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
