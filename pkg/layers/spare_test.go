package layers

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// A removed volume's directories serve the next volume, which must see
// nothing of the first: not its data, nor the mode, owner or xattrs its
// pod gave the volume root, nor init files it alone had.
func TestSpareSkeletonIsReusedClean(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	ctx := context.Background()

	first := filepath.Join(t.TempDir(), "first")
	mountVolume(t, s, VolumeSpec{ID: "first", Layers: chainOf(img), Target: first, Ephemeral: true, Init: []InitFile{
		{Path: "etc/pod", Data: []byte("first pod, a longer name")},
		{Path: "etc/only-first", Data: []byte("x")},
		{Path: "run/a", Data: []byte("a file here")},
	}})
	mustDo(t, os.WriteFile(filepath.Join(first, "secret"), []byte("first's data"), 0o600))
	mustDo(t, os.Chmod(first, 0o700))
	mustDo(t, os.Chown(first, 1000, 1000))
	mustDo(t, unix.Setxattr(first, "user.note", []byte("first"), 0))
	mustDo(t, s.Unmount(ctx, "first", RemoveUpper))
	if got := entryNames(t, s.path(spareDir)); len(got) != 2 {
		t.Fatalf("want the removed volume kept as one spare (2 dirs), got %v", got)
	}

	second := filepath.Join(t.TempDir(), "second")
	vol := mountVolume(t, s, VolumeSpec{ID: "second", Layers: chainOf(img), Target: second, Ephemeral: true, Init: []InitFile{
		{Path: "etc/pod", Data: []byte("second")},
		{Path: "run/a/b", Data: []byte("a is a directory now"), Mode: 0o600},
	}})
	if got := entryNames(t, s.path(spareDir)); len(got) != 0 {
		t.Errorf("the spare was not used: %v", got)
	}
	if got := readFile(t, filepath.Join(second, "etc/pod")); got != "second" {
		t.Errorf("etc/pod = %q, want the second pod's (written over a longer one)", got)
	}
	if got := readFile(t, filepath.Join(second, "run/a/b")); got != "a is a directory now" {
		t.Errorf("run/a/b = %q", got)
	}
	for _, gone := range []string{"secret", "etc/only-first"} {
		if _, err := os.Lstat(filepath.Join(second, gone)); !os.IsNotExist(err) {
			t.Errorf("%s of the first volume is visible in the second: %v", gone, err)
		}
	}
	assertMode(t, filepath.Join(second, "run/a/b"), 0o600)
	var st unix.Stat_t
	mustDo(t, unix.Stat(vol.UpperDir(), &st))
	if st.Mode&0o7777 != 0o755 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("upper root: mode %o owner %d:%d, want 755 0:0", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if _, err := unix.Getxattr(second, "user.note", make([]byte, 64)); err != unix.ENODATA {
		t.Errorf("user.note of the first volume's root: want ENODATA, got %v", err)
	}
	// The volume is laid out as a new one is: its short links lead to it.
	for _, dir := range []string{volumeDirName("second"), volumeDirName("second") + initSuffix} {
		id, err := readLink(s.path(dir))
		mustDo(t, err)
		target, err := os.Readlink(s.path(linkDir, id))
		mustDo(t, err)
		if target != linkTarget(dir) {
			t.Errorf("l/%s -> %s, want %s", id, target, linkTarget(dir))
		}
	}
	links := entryNames(t, s.path(linkDir))
	if want := len(img.Layers) + 2; len(links) != want {
		t.Errorf("want %d short links (layers and one volume), got %d", want, len(links))
	}
}

func TestSparesBounded(t *testing.T) {
	needRoot(t)
	s, err := Open(context.Background(), Options{Root: t.TempDir(), NoSync: true, Spares: -1})
	mustDo(t, err)
	img := pull(t, s, exampleImage(t))
	mountVolume(t, s, VolumeSpec{ID: "v", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "v")})
	mustDo(t, s.Unmount(context.Background(), "v", RemoveUpper))
	if got := entryNames(t, s.path(spareDir)); len(got) != 0 {
		t.Errorf("no spares wanted, got %v", got)
	}
	if got := entryNames(t, s.dir); slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, volumePrefix) }) {
		t.Errorf("volume directories left: %v", got)
	}
}

// Another process opening the store empties the spares this one knows of;
// a new volume is then built from scratch.
func TestSpareEmptiedByAnotherOpen(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	ctx := context.Background()
	mountVolume(t, s, VolumeSpec{ID: "a", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "a")})
	mustDo(t, s.Unmount(ctx, "a", RemoveUpper))
	if _, err := Open(ctx, Options{Root: filepath.Dir(s.dir), NoSync: true}); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "b")
	mountVolume(t, s, VolumeSpec{ID: "b", Layers: chainOf(img), Target: target, Init: []InitFile{{Path: "pod", Data: []byte("b")}}})
	if got := readFile(t, filepath.Join(target, "pod")); got != "b" {
		t.Errorf("pod = %q", got)
	}
}

func TestWriteInitFilesOverAnEarlierTree(t *testing.T) {
	for _, c := range []struct {
		name       string
		old, files []InitFile
		want       []string // every path under the dir, files as path=content
	}{
		{"empty dir", nil, []InitFile{{Path: "a/b", Data: []byte("1")}}, []string{"a", "a/b=1"}},
		{"same paths, shorter content", []InitFile{{Path: "a", Data: []byte("long")}}, []InitFile{{Path: "a", Data: []byte("s")}}, []string{"a=s"}},
		{"file becomes a directory", []InitFile{{Path: "a", Data: []byte("f")}}, []InitFile{{Path: "a/b", Data: []byte("d")}}, []string{"a", "a/b=d"}},
		{"directory becomes a file", []InitFile{{Path: "a/b/c", Data: []byte("f")}}, []InitFile{{Path: "a", Data: []byte("d")}}, []string{"a=d"}},
		{"extra files removed", []InitFile{{Path: "x/y", Data: []byte("1")}, {Path: "x/z", Data: []byte("2")}, {Path: "w", Data: []byte("3")}},
			[]InitFile{{Path: "x/z", Data: []byte("22")}}, []string{"x", "x/z=22"}},
		{"no files", []InitFile{{Path: "a/b", Data: []byte("1")}}, nil, nil},
		{"same tree", []InitFile{{Path: "a/b", Data: []byte("1")}, {Path: "c", Data: []byte("2")}},
			[]InitFile{{Path: "c", Data: []byte("3")}, {Path: "a/b", Data: []byte("4")}}, []string{"a", "a/b=4", "c=3"}},
		{"more files", []InitFile{{Path: "a/b", Data: []byte("1")}}, []InitFile{{Path: "a/b", Data: []byte("1")}, {Path: "a/c/d", Data: []byte("2")}},
			[]string{"a", "a/b=1", "a/c", "a/c/d=2"}},
	} {
		// The earlier paths known, when a pruning walk may be skipped, or not.
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/known=%t", c.name, known), func(t *testing.T) {
				dir := t.TempDir()
				mustDo(t, writeInitFiles(dir, c.old, []string{}))
				var had []string
				if known {
					had = []string{}
					for _, f := range c.old {
						had = append(had, f.Path)
					}
				}
				mustDo(t, writeInitFiles(dir, c.files, had))
				if got := treeOf(t, dir); !slices.Equal(got, c.want) {
					t.Errorf("tree = %v, want %v", got, c.want)
				}
			})
		}
	}
}

func treeOf(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	mustDo(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if !d.IsDir() {
			rel += "=" + readFile(t, p)
		}
		out = append(out, rel)
		return nil
	}))
	return out
}

func entryNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	mustDo(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	mustDo(t, err)
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A layer another process collects is noticed at the next mount, which
// fails with ErrLayerMissing; the import after it fetches the layer again.
func TestLayerCollectedByAnotherProcess(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	reg := testimage.NewRegistry(t)
	ref := reg.Push(t, "example/app:v1", exampleImage(t))
	ctx := context.Background()
	img, err := s.Pull(ctx, ref, source.Options{Insecure: []string{reg.Host}})
	mustDo(t, err)
	target := filepath.Join(t.TempDir(), "mnt")
	spec := VolumeSpec{ID: "v", Layers: chainOf(img), Target: target}
	mountVolume(t, s, spec)
	mustDo(t, s.Unmount(ctx, "v", RemoveUpper))

	other, err := Open(ctx, Options{Root: filepath.Dir(s.dir), NoSync: true})
	mustDo(t, err)
	if _, err := other.GC(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	if s.HasLayer(spec.Layers[0]) {
		t.Fatal("the other store's GC left the layer")
	}
	if _, err := s.Mount(ctx, spec); !errors.Is(err, ErrLayerMissing) {
		t.Fatalf("mount after the layers were collected: want ErrLayerMissing, got %v", err)
	}
	mustDo(t, s.Unmount(ctx, "v", RemoveUpper))
	if _, err := s.Pull(ctx, ref, source.Options{Insecure: []string{reg.Host}}); err != nil {
		t.Fatal(err)
	}
	mountVolume(t, s, spec)
	if got := readFile(t, filepath.Join(target, "etc/os-release")); got != "top\n" {
		t.Errorf("os-release = %q after the layers came back", got)
	}
}

// Content that is already there is kept, but the mode still holds.
func TestWriteInitFilesSameContentNewMode(t *testing.T) {
	dir := t.TempDir()
	mustDo(t, writeInitFiles(dir, []InitFile{{Path: "a/b", Data: []byte("same"), Mode: 0o644}}, []string{}))
	mustDo(t, writeInitFiles(dir, []InitFile{{Path: "a/b", Data: []byte("same"), Mode: 0o600}}, []string{"a/b"}))
	if got := treeOf(t, dir); !slices.Equal(got, []string{"a", "a/b=same"}) {
		t.Errorf("tree = %v", got)
	}
	assertMode(t, filepath.Join(dir, "a/b"), 0o600)
}
