package layers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the store mounts overlayfs and writes trusted.* xattrs")
	}
}

func openStore(t testing.TB, mode overlay.Mode) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{Root: t.TempDir(), MountMode: mode, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// exampleImage has three layers in three compressions: a base tree, a layer
// that deletes and replaces parts of it, and a top layer.
func exampleImage(t testing.TB) v1.Image {
	t.Helper()
	base := mustLayer(t, testimage.Gzip,
		testimage.Dir("etc"),
		testimage.File("etc/os-release", "base\n"),
		testimage.File("etc/removed", "gone soon\n"),
		testimage.Dir("opt/tool"),
		testimage.File("opt/tool/old", "old tool\n"),
		testimage.File("bin/run", "#!/bin/sh\necho run\n"),
		testimage.Hardlink("bin/run-again", "bin/run"),
		testimage.Symlink("bin/latest", "run"),
		withXattr(testimage.File("etc/labelled", "x"), "user.layer", "base"),
	)
	middle := mustLayer(t, testimage.Zstd,
		testimage.Whiteout("etc/removed"),
		testimage.Opaque("opt/tool"),
		testimage.File("opt/tool/new", "new tool\n"),
	)
	top := mustLayer(t, testimage.None,
		testimage.File("etc/os-release", "top\n"),
	)
	img, err := testimage.Image(base, middle, top)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func withXattr(e testimage.Entry, k, v string) testimage.Entry {
	e.Xattrs = map[string]string{k: v}
	return e
}

func mustLayer(t testing.TB, c testimage.Compression, entries ...testimage.Entry) v1.Layer {
	t.Helper()
	l, err := testimage.Layer(entries, c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func pull(t testing.TB, s *Store, img v1.Image) *source.Image {
	t.Helper()
	reg := testimage.NewRegistry(t)
	ref := reg.Push(t, "example/app:v1", img)
	got, err := s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func chainOf(img *source.Image) []v1.Hash {
	out := make([]v1.Hash, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = l.DiffID
	}
	return out
}

func mountVolume(t testing.TB, s *Store, spec VolumeSpec) *Volume {
	t.Helper()
	vol, err := s.Mount(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = overlay.Unmount(context.Background(), vol.Target) })
	return vol
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPullComposeMount(t *testing.T) {
	needRoot(t)
	for _, mode := range []overlay.Mode{overlay.ModeFSConfig, overlay.ModeLegacy} {
		t.Run(mode.String(), func(t *testing.T) {
			s := openStore(t, mode)
			img := pull(t, s, exampleImage(t))
			target := filepath.Join(t.TempDir(), "mnt")
			vol := mountVolume(t, s, VolumeSpec{
				ID:     "pod-a",
				Layers: chainOf(img),
				Init:   []InitFile{{Path: "etc/pod/name", Data: []byte("pod-a\n"), Mode: 0o600}},
				Target: target,
			})

			want := map[string]string{
				"etc/os-release": "top\n",
				"opt/tool/new":   "new tool\n",
				"bin/run":        "#!/bin/sh\necho run\n",
				"bin/run-again":  "#!/bin/sh\necho run\n",
				"bin/latest":     "#!/bin/sh\necho run\n",
				"etc/pod/name":   "pod-a\n",
				"etc/labelled":   "x",
			}
			for name, body := range want {
				if got := readFile(t, filepath.Join(target, name)); got != body {
					t.Errorf("%s = %q, want %q", name, got, body)
				}
			}
			for _, gone := range []string{"etc/removed", "opt/tool/old"} {
				if _, err := os.Lstat(filepath.Join(target, gone)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s: want hidden by whiteout/opaque dir, got err=%v", gone, err)
				}
			}
			if fi, err := os.Stat(filepath.Join(target, "etc/pod/name")); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("init file mode: %v %v", fi, err)
			}
			if l, err := os.Readlink(filepath.Join(target, "bin/latest")); err != nil || l != "run" {
				t.Errorf("symlink: %q %v", l, err)
			}
			a, _ := os.Stat(filepath.Join(target, "bin/run"))
			b, _ := os.Stat(filepath.Join(target, "bin/run-again"))
			if a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
				t.Error("hardlinked files have different inodes")
			}
			buf := make([]byte, 16)
			if n, err := unix.Lgetxattr(filepath.Join(target, "etc/labelled"), "user.layer", buf); err != nil || string(buf[:n]) != "base" {
				t.Errorf("xattr user.layer = %q, %v", buf[:n], err)
			}

			// Writes land in the volume's own upper, not in a shared layer.
			if err := os.WriteFile(filepath.Join(target, "etc/os-release"), []byte("mine\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(vol.UpperDir(), "etc/os-release")); got != "mine\n" {
				t.Errorf("upper has %q", got)
			}
			top := img.Layers[len(img.Layers)-1].DiffID.Hex
			if got := readFile(t, s.path(top, diffName, "etc/os-release")); got != "top\n" {
				t.Errorf("shared layer changed: %q", got)
			}
			assertLayout(t, s, vol, img)
		})
	}
}

// assertLayout checks the on-disk layout an overlay2 operator expects.
func assertLayout(t *testing.T, s *Store, vol *Volume, img *source.Image) {
	t.Helper()
	var links []string
	for i := len(img.Layers) - 1; i >= 0; i-- {
		dir := s.path(img.Layers[i].DiffID.Hex)
		id := strings.TrimSpace(readFile(t, filepath.Join(dir, linkName)))
		if !validLinkID(id) {
			t.Fatalf("%s/link = %q", dir, id)
		}
		if target, err := os.Readlink(s.path(linkDir, id)); err != nil || target != "../"+filepath.Base(dir)+"/diff" {
			t.Errorf("l/%s -> %q, %v", id, target, err)
		}
		links = append(links, "l/"+id)
	}
	initDir := vol.Dir + initSuffix
	initID := strings.TrimSpace(readFile(t, filepath.Join(initDir, linkName)))
	if got, want := readFile(t, filepath.Join(initDir, lowerName)), strings.Join(links, ":"); got != want {
		t.Errorf("init lower = %q, want %q", got, want)
	}
	if got, want := readFile(t, filepath.Join(vol.Dir, lowerName)), strings.Join(append([]string{"l/" + initID}, links...), ":"); got != want {
		t.Errorf("volume lower = %q, want %q", got, want)
	}
	for _, sub := range []string{diffName, workName, mergedName} {
		if fi, err := os.Stat(filepath.Join(vol.Dir, sub)); err != nil || !fi.IsDir() {
			t.Errorf("volume %s: %v", sub, err)
		}
	}
}

func TestLayersSharedAcrossImages(t *testing.T) {
	s := openStore(t, overlay.ModeAuto)
	shared := mustLayer(t, testimage.Gzip, testimage.File("shared", "same bytes"))
	a, _ := testimage.Image(shared, mustLayer(t, testimage.Gzip, testimage.File("a", "a")))
	b, _ := testimage.Image(shared, mustLayer(t, testimage.Gzip, testimage.File("b", "b")))
	pull(t, s, a)
	pull(t, s, b)
	ls, err := s.Layers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 {
		t.Fatalf("want 3 distinct layers stored once each, got %d", len(ls))
	}
}

func TestDigestMismatchLeavesNothing(t *testing.T) {
	s := openStore(t, overlay.ModeAuto)
	good := mustLayer(t, testimage.Gzip, testimage.File("f", "content"))
	img, _ := testimage.Image(good)
	img = withDiffID(t, img, 0, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)})
	reg := testimage.NewRegistry(t)
	ref := reg.Push(t, "bad/diffid:v1", img)
	_, err := s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("want ErrDigestMismatch, got %v", err)
	}
	assertEmptyStore(t, s)
}

// assertEmptyStore checks that nothing of a failed import stayed.
func assertEmptyStore(t *testing.T, s *Store) {
	t.Helper()
	for _, d := range []string{"", linkDir, stagingDir, trashDir} {
		entries, err := os.ReadDir(s.path(d))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if d == "" && (e.Name() == linkDir || strings.HasPrefix(e.Name(), ".")) {
				continue
			}
			t.Errorf("left behind: %s", filepath.Join(s.path(d), e.Name()))
		}
	}
}

func TestUnmountKeepsOrRemovesUpper(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	target := filepath.Join(t.TempDir(), "mnt")
	spec := VolumeSpec{ID: "pv-1", Layers: chainOf(img), Target: target}
	mountVolume(t, s, spec)
	if err := os.WriteFile(filepath.Join(target, "data"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Unmount(ctx, "pv-1", KeepUpper); err != nil {
		t.Fatal(err)
	}
	if m, _ := overlay.IsMounted(target); m {
		t.Fatal("still mounted")
	}
	if err := s.Unmount(ctx, "pv-1", KeepUpper); err != nil {
		t.Fatalf("second unmount must be a no-op: %v", err)
	}
	mountVolume(t, s, spec)
	if got := readFile(t, filepath.Join(target, "data")); got != "keep me" {
		t.Fatalf("upper lost across remount: %q", got)
	}
	// Idempotent: mounting again where it is mounted changes nothing.
	if _, err := s.Mount(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmount(ctx, "pv-1", RemoveUpper); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{volumeDirName("pv-1"), volumeDirName("pv-1") + initSuffix} {
		if _, err := os.Stat(s.path(d)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists: %v", d, err)
		}
	}
	links, _ := os.ReadDir(s.path(linkDir))
	if len(links) != len(img.Layers) {
		t.Errorf("want only the %d layer links left, got %d", len(img.Layers), len(links))
	}
	if err := s.Unmount(ctx, "pv-1", RemoveUpper); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("unmount of a removed volume: want ErrVolumeNotFound, got %v", err)
	}
}

func TestReadOnlyVolume(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	target := filepath.Join(t.TempDir(), "ro")
	mountVolume(t, s, VolumeSpec{ID: "ro", Layers: chainOf(img), ReadOnly: true, Target: target})
	if got := readFile(t, filepath.Join(target, "etc/os-release")); got != "top\n" {
		t.Errorf("os-release = %q", got)
	}
	err := os.WriteFile(filepath.Join(target, "x"), nil, 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Fatalf("write to read-only volume: want EROFS, got %v", err)
	}
}

func TestTooManyLayers(t *testing.T) {
	s := openStore(t, overlay.ModeAuto)
	chain := make([]v1.Hash, 500)
	_, err := s.Mount(context.Background(), VolumeSpec{ID: "big", Layers: chain})
	if !errors.Is(err, ErrTooManyLayers) || !strings.Contains(err.Error(), "501") || !strings.Contains(err.Error(), "500") {
		t.Fatalf("want an error naming 501 layers and the limit 500, got %v", err)
	}
}

func TestInitFileRejectsEscapes(t *testing.T) {
	s := openStore(t, overlay.ModeAuto)
	for _, p := range []string{"../x", "/etc/passwd", "a/../../x", "", "a//b"} {
		_, err := s.Mount(context.Background(), VolumeSpec{ID: "v", Init: []InitFile{{Path: p}}})
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("init path %q: want ErrInvalid, got %v", p, err)
		}
	}
}

func TestRepairRestoresLinks(t *testing.T) {
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	dir := img.Layers[0].DiffID.Hex
	id := strings.TrimSpace(readFile(t, s.path(dir, linkName)))
	ctx := context.Background()

	// What a crash can leave: a missing link, a dangling one, a wrong one,
	// half an import.
	if err := os.Remove(s.path(linkDir, id)); err != nil {
		t.Fatal(err)
	}
	_ = os.Symlink("../nowhere/diff", s.path(linkDir, "AAAAAAAAAAAAAAAAAAAAAAAAAA"))
	other := strings.TrimSpace(readFile(t, s.path(img.Layers[1].DiffID.Hex, linkName)))
	_ = os.Remove(s.path(linkDir, other))
	_ = os.Symlink("../"+dir+"/diff", s.path(linkDir, other))
	_ = os.MkdirAll(s.path(stagingDir, "half", "diff"), 0o755)

	s2, err := Open(ctx, Options{Root: filepath.Dir(s.dir)})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(s2.path(linkDir, id)); err != nil || target != "../"+dir+"/diff" {
		t.Errorf("missing link not restored: %q %v", target, err)
	}
	if target, _ := os.Readlink(s2.path(linkDir, other)); target != "../"+img.Layers[1].DiffID.Hex+"/diff" {
		t.Errorf("wrong link not fixed: %q", target)
	}
	if _, err := os.Lstat(s2.path(linkDir, "AAAAAAAAAAAAAAAAAAAAAAAAAA")); !errors.Is(err, os.ErrNotExist) {
		t.Error("dangling link not removed")
	}
	if entries, _ := os.ReadDir(s2.path(stagingDir)); len(entries) != 0 {
		t.Error("staging leftovers not removed")
	}
}

func TestUsersRebuiltAfterRestartAndGC(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	ctx := context.Background()
	img := pull(t, s, exampleImage(t))
	unused, _ := testimage.Image(mustLayer(t, testimage.Gzip, testimage.File("big", strings.Repeat("x", 4096))))
	spare := pull(t, s, unused)
	mountVolume(t, s, VolumeSpec{ID: "in-use", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "m")})

	s2, err := Open(ctx, Options{Root: filepath.Dir(s.dir)})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := s2.Layers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		want := 1
		if l.DiffID == spare.Layers[0].DiffID.String() {
			want = 0
		}
		if l.Users != want {
			t.Errorf("layer %s: %d users, want %d", l.DiffID, l.Users, want)
		}
	}
	res, err := s2.GC(ctx, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Removed) != 1 || res.Removed[0].DiffID != spare.Layers[0].DiffID.String() {
		t.Fatalf("GC removed %+v, want only the unused layer", res.Removed)
	}
	if s2.HasLayer(spare.Layers[0].DiffID) {
		t.Error("unused layer still present")
	}
	for _, l := range img.Layers {
		if !s2.HasLayer(l.DiffID) {
			t.Errorf("GC removed layer %s that a volume uses", l.DiffID)
		}
	}
}

// withDiffID replaces one diff_id in the image config: a config that lies
// about its layers, as a corrupted or malicious image would.
func withDiffID(t testing.TB, img v1.Image, i int, h v1.Hash) v1.Image {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.RootFS.DiffIDs[i] = h
	out, err := mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
