package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFiles(t *testing.T) {
	for _, durable := range []Durability{Volatile, Durable} {
		dir := t.TempDir()
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		if err := os.WriteFile(a, []byte("old content, longer"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteFiles(map[string][]byte{a: []byte("new"), b: []byte("created")}, 0o600, durable); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]string{a: "new", b: "created"} {
			got, err := os.ReadFile(path)
			if err != nil || string(got) != want {
				t.Errorf("durable=%t: %s = %q, %v; want %q", durable, filepath.Base(path), got, err, want)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("durable=%t: %s mode %v, %v; want 0600", durable, filepath.Base(path), fi.Mode().Perm(), err)
			}
		}
		if tmps, _ := filepath.Glob(filepath.Join(dir, TempGlob)); len(tmps) != 0 {
			t.Errorf("durable=%t: temporary files left: %v", durable, tmps)
		}
	}
}

// An existing file is exchanged: its old content is left under the
// temporary name, which the caller deletes.
func TestReplaceExchanges(t *testing.T) {
	dir := t.TempDir()
	tmp, path := filepath.Join(dir, ".tmp-x"), filepath.Join(dir, "x")
	for p, data := range map[string]string{tmp: "new", path: "old"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Replace(tmp, path); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{path: "new", tmp: "old"} {
		if got, err := os.ReadFile(p); err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", filepath.Base(p), got, err, want)
		}
	}
	if err := Replace(filepath.Join(dir, ".tmp-y"), filepath.Join(dir, "y")); !os.IsNotExist(err) {
		t.Errorf("replace from a missing file: want ErrNotExist, got %v", err)
	}
}
