package overlay

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// IsMounted answers the same along its fast path (no symlinks) and its
// slow one (mountinfo), for mount points, plain directories, missing
// paths and paths through symlinks.
func TestIsMountedPaths(t *testing.T) {
	needRoot(t)
	mnt := target(t)
	if err := Bind(t.TempDir(), mnt, BindOptions{}); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "plain")
	mkdir(t, plain)
	links := t.TempDir()
	for name, to := range map[string]string{"to-parent": filepath.Dir(mnt), "to-mount": mnt, "to-plain": plain} {
		if err := os.Symlink(to, filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string]bool{
		mnt:                                    true,
		plain:                                  false,
		filepath.Join(plain, "missing"):        false,
		filepath.Join(plain, "missing", "too"): false,
		"/":                                    true,
		filepath.Join(links, "to-parent", filepath.Base(mnt)): true, // a symlink on the way: mountinfo follows it
		filepath.Join(links, "to-mount"):                      true, // a symlink at the end too
		filepath.Join(links, "to-plain"):                      false,
	} {
		got, err := IsMounted(path)
		if err != nil || got != want {
			t.Errorf("IsMounted(%s) = %v, %v; want %v", path, got, err, want)
		}
		if fast, known := mountedNoSymlinks(path); known && fast != want {
			t.Errorf("fast path for %s says %v, want %v", path, fast, want)
		}
	}
}

// PrepareTarget says whether it made the directory; what it finds may be
// mounted, what it makes is not, and a symlink or a file is refused.
func TestPrepareTarget(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	made := filepath.Join(base, "a", "b", "mnt")
	if st, err := PrepareTarget(made); err != nil || st != TargetMade {
		t.Fatalf("PrepareTarget of a new path = %v, %v; want TargetMade", st, err)
	}
	if fi, err := os.Lstat(made); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o750 {
		t.Fatalf("made target: %v, %v; want a 0750 directory", fi, err)
	}
	if st, err := PrepareTarget(made); err != nil || st != TargetFound {
		t.Errorf("PrepareTarget of an existing directory = %v, %v; want TargetFound", st, err)
	}
	if err := os.Symlink(made, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(base, "link"), filepath.Join(base, "link", "x")} {
		if _, err := PrepareTarget(p); !errors.Is(err, ErrSymlinkInTarget) {
			t.Errorf("PrepareTarget(%s) = %v, want ErrSymlinkInTarget", p, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(made, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a directory was made behind the symlink: %v", err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PrepareTarget(file); err == nil {
		t.Error("PrepareTarget of a file succeeded")
	}
}
