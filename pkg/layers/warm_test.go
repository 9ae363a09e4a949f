package layers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/layerset/layerset-csi/pkg/overlay"
)

// HasLayers answers from memory for layers used before, and a layer
// another process collects is then found missing by the next mount,
// which forgets it: HasLayers says so again, and the import brings it
// back. A caller that skips Import when HasLayers holds therefore never
// mounts a stale chain.
func TestHasLayersAfterAnotherProcessCollects(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	ctx := context.Background()
	if !s.HasLayers(chainOf(img)) {
		t.Fatal("HasLayers after the pull = false")
	}
	spec := VolumeSpec{ID: "v", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "mnt")}
	mountVolume(t, s, spec)
	mustDo(t, s.Unmount(ctx, "v", RemoveUpper))

	other, err := Open(ctx, Options{Root: filepath.Dir(s.dir), NoSync: true})
	mustDo(t, err)
	if _, err := other.GC(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	// Memory still says present: only a mount finds out.
	if _, err := s.Mount(ctx, spec); !errors.Is(err, ErrLayerMissing) {
		t.Fatalf("mount after another process collected the layers = %v, want ErrLayerMissing", err)
	}
	mustDo(t, s.Unmount(ctx, "v", RemoveUpper))
	if s.HasLayers(chainOf(img)) {
		t.Fatal("HasLayers after a mount found the layers gone = true")
	}
	mustDo(t, s.Import(ctx, img.Layers))
	if !s.HasLayers(chainOf(img)) {
		t.Fatal("HasLayers after the import = false")
	}
	mountVolume(t, s, spec)
}

// The in-place rewrite of a spare's init files follows no symlink: with
// one in the tree (which the store never writes) the files are written
// through the os.Root path, and nothing lands outside the layer.
func TestInitFilesNotThroughSymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	mustDo(t, writeInitFiles(dir, []InitFile{{Path: "etc/a", Data: []byte("1")}}, []string{}))
	mustDo(t, os.RemoveAll(filepath.Join(dir, "etc")))
	mustDo(t, os.Symlink(outside, filepath.Join(dir, "etc")))
	err := writeInitFiles(dir, []InitFile{{Path: "etc/a", Data: []byte("2")}}, []string{"etc/a"})
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("an init file was written through the symlink: %v (write: %v)", entries, err)
	}
	if err == nil {
		// os.Root refuses to leave dir; a write that succeeded must
		// have replaced the link.
		if fi, lerr := os.Lstat(filepath.Join(dir, "etc")); lerr != nil || fi.Mode()&os.ModeSymlink != 0 {
			t.Errorf("write succeeded, but etc is %v, %v", fi, lerr)
		}
	}
}

// A spare's files are written over in place, the same inodes, when the
// tree has room for the new files.
func TestInitFilesInPlace(t *testing.T) {
	dir := t.TempDir()
	files := []InitFile{{Path: "etc/pod", Data: []byte("pod-a-long-name")}, {Path: "motd", Data: []byte("x"), Mode: 0o444}}
	mustDo(t, writeInitFiles(dir, files, []string{}))
	ino := func(p string) uint64 {
		t.Helper()
		st, err := os.Stat(filepath.Join(dir, p))
		mustDo(t, err)
		return inodeOf(st)
	}
	before := ino("etc/pod")
	files[0].Data, files[1].Mode = []byte("pod-b"), 0o400
	mustDo(t, writeInitFiles(dir, files, []string{"etc/pod", "motd"}))
	if got := readFile(t, filepath.Join(dir, "etc/pod")); got != "pod-b" {
		t.Errorf("etc/pod = %q, want pod-b", got)
	}
	if ino("etc/pod") != before {
		t.Error("etc/pod is a new file, not the old one written over")
	}
	assertMode(t, filepath.Join(dir, "motd"), 0o400)
}

func inodeOf(fi os.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }

// A chain mounted before is mounted from what its first mount derived
// (chainCache), until layers may have gone: after a collection in this
// process and a new import, which gives the layers new short links, a
// volume's lower files name the new links, not the remembered ones, so
// that collection keeps counting the layers it uses.
func TestChainCacheForgetsCollectedLayers(t *testing.T) {
	needRoot(t)
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, exampleImage(t))
	ctx := context.Background()
	for _, id := range []string{"a", "b"} { // the second from the cache
		vol := mountVolume(t, s, VolumeSpec{ID: id, Layers: chainOf(img), Target: filepath.Join(t.TempDir(), id)})
		assertLayout(t, s, vol, img)
		mustDo(t, s.Unmount(ctx, id, RemoveUpper))
	}
	if s.chains.get(chainOf(img)) == nil {
		t.Fatal("a chain mounted twice is not remembered")
	}
	if res, err := s.GC(ctx, 0, nil); err != nil || len(res.Removed) != len(img.Layers) {
		t.Fatalf("GC removed %d layers, %v; want all %d", len(res.Removed), err, len(img.Layers))
	}
	if s.chains.get(chainOf(img)) != nil || s.HasLayers(chainOf(img)) {
		t.Fatal("after the layers were collected the chain is still remembered as present")
	}
	mustDo(t, s.Import(ctx, img.Layers))
	vol := mountVolume(t, s, VolumeSpec{ID: "c", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "c")})
	assertLayout(t, s, vol, img) // the links the layers have now
	users, err := s.layerUsers()
	mustDo(t, err)
	for _, l := range img.Layers {
		id := strings.TrimSpace(readFile(t, filepath.Join(s.path(l.DiffID.Hex), linkName)))
		if users[id] != 1 {
			t.Errorf("layer %s (l/%s) has %d users, want the volume", l.DiffID, id, users[id])
		}
	}
}
