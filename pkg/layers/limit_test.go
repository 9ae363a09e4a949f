package layers

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/secondkernel"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
)

const mib = 1 << 20

// full reports whether dd stopped as a pod at its limit sees it.
func full(stderr string) bool {
	return strings.Contains(stderr, "No space left on device") || strings.Contains(stderr, "Disk quota exceeded")
}

// loopFilesystem mounts a fresh filesystem of fstype on a loop device
// under a temp dir, for a store to live on.
func loopFilesystem(t *testing.T, fstype string) string {
	t.Helper()
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 512*mib); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs."+fstype, "-q", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.%s (bash hack/test-packages.sh installs it): %v: %s", fstype, err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", fstype, err, out)
	}
	t.Cleanup(func() {
		// Detached: the stores opened on it keep their lock files open
		// until they are collected. testLimitedVolumes checks that no
		// mount of theirs is left on it.
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the %s store filesystem: %v", fstype, err)
		}
	})
	return mnt
}

// TestLimitedVolumesFallback runs the limited-volume scenario with images,
// the fallback for kernels without quotas (like this one), on each
// filesystem a store may live on.
func TestLimitedVolumesFallback(t *testing.T) {
	needRoot(t)
	for _, fs := range []string{"host", "ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			root := t.TempDir()
			if fs != "host" {
				root = loopFilesystem(t, fs)
			}
			testLimitedVolumes(t, root, quota.ModeFallback, quota.MethodImage)
		})
	}
}

// testLimitedVolumes: two volumes limited independently, writes stop at
// the limit, usage is read from the limit, a live raise, a restart, and
// removal that leaves nothing.
func testLimitedVolumes(t *testing.T, root string, mode quota.Mode, method quota.Method) {
	ctx := context.Background()
	opts := Options{Root: root, NoSync: true, Quota: quota.Options{Mode: mode}}
	s, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Limits().Method(); got != method {
		t.Fatalf("store on %s with --quota=%s limits by %q, want %q", root, mode, got, method)
	}
	img := pull(t, s, exampleImage(t))
	mnt := t.TempDir()
	small := VolumeSpec{ID: "small", Layers: chainOf(img), Target: filepath.Join(mnt, "small"), Size: 8 * mib}
	large := VolumeSpec{ID: "large", Layers: chainOf(img), Target: filepath.Join(mnt, "large"), Size: 24 * mib}
	free := VolumeSpec{ID: "free", Layers: chainOf(img), Target: filepath.Join(mnt, "free")}
	for _, spec := range []VolumeSpec{small, large, free} {
		vol := mountVolume(t, s, spec)
		if (vol.Limit != nil) != (spec.Size > 0) || vol.Limit != nil && (vol.Limit.Bytes != spec.Size || vol.Limit.Method != method) {
			t.Fatalf("volume %s of size %d has limit %+v", spec.ID, spec.Size, vol.Limit)
		}
	}
	t.Cleanup(func() {
		for _, id := range []string{"small", "large", "free"} {
			_ = s.Unmount(ctx, id, RemoveUpper)
		}
	})

	for _, tc := range []struct {
		spec VolumeSpec
		mib  int
	}{{small, 16}, {large, 32}} {
		n, stderr := secondkernel.FillAsPod(t, filepath.Join(tc.spec.Target, "fill"), tc.mib)
		if !full(stderr) || n > tc.spec.Size || n < tc.spec.Size-mib {
			t.Errorf("volume %s (limit %d): a %d MiB write stopped at %d bytes: %q", tc.spec.ID, tc.spec.Size, tc.mib, n, stderr)
		}
		vol, err := s.Volume(tc.spec.ID)
		if err != nil {
			t.Fatal(err)
		}
		u, err := s.Usage(ctx, vol)
		if err != nil {
			t.Fatal(err)
		}
		if u.Limit != tc.spec.Size || u.Bytes < n || u.Bytes > tc.spec.Size+mib {
			t.Errorf("volume %s holds %d bytes: usage %+v", tc.spec.ID, n, u)
		}
	}
	// Another volume, the store and the layers are not touched by a full one.
	if n, stderr := secondkernel.FillAsPod(t, filepath.Join(free.Target, "fill"), 16); n != 16*mib {
		t.Errorf("unlimited volume beside full ones: %d bytes written: %s", n, stderr)
	}
	if freeVol, err := s.Volume("free"); err != nil {
		t.Fatal(err)
	} else if _, err := s.Usage(ctx, freeVol); !errors.Is(err, ErrNotLimited) {
		t.Errorf("Usage of an unlimited volume: %v, want ErrNotLimited", err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir(), "probe"), []byte("x"), 0o600); err != nil {
		t.Errorf("the store's own directory is not writable while volumes are full: %v", err)
	}
	_ = os.Remove(filepath.Join(s.Dir(), "probe"))

	// A live raise: the mounted volume takes 8 MiB more at once.
	if _, err := s.Resize(ctx, "small", 16*mib); err != nil {
		t.Fatal(err)
	}
	if n, stderr := secondkernel.FillAsPod(t, filepath.Join(small.Target, "more"), 6); n != 6*mib {
		t.Errorf("after raising the limit by 8 MiB, a 6 MiB write stopped at %d: %s", n, stderr)
	}
	if _, err := s.Resize(ctx, "small", 8*mib); !errors.Is(err, quota.ErrShrink) {
		t.Errorf("shrink: %v, want quota.ErrShrink", err)
	}
	if _, err := s.Resize(ctx, "free", 8*mib); !errors.Is(err, ErrNotLimited) {
		t.Errorf("resize of an unlimited volume: %v, want ErrNotLimited", err)
	}

	// A restart: the volume unmounted with its upper kept, the store
	// opened again, the volume mounted again with its limit and data.
	if err := s.Unmount(ctx, "small", KeepUpper); err != nil {
		t.Fatal(err)
	}
	s, err = Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	vol := mountVolume(t, s, VolumeSpec{ID: "small", Layers: chainOf(img), Target: small.Target, Size: 8 * mib})
	if vol.Limit == nil || vol.Limit.Bytes != 16*mib {
		t.Errorf("after a restart the limit is %+v, want the raised 16 MiB kept", vol.Limit)
	}
	if fi, err := os.Stat(filepath.Join(small.Target, "more")); err != nil || fi.Size() != 6*mib {
		t.Errorf("after a restart the volume's file: %v %v", fi, err)
	}
	if n, stderr := secondkernel.FillAsPod(t, filepath.Join(small.Target, "again"), 8); !full(stderr) || n > 2*mib+64*1024 {
		t.Errorf("after a restart the limit does not hold: %d bytes written: %q", n, stderr)
	}

	// Ids are claimed again at start: a new volume never gets a live one's.
	third := mountVolume(t, s, VolumeSpec{ID: "third", Layers: chainOf(img), Target: filepath.Join(mnt, "third"), Size: 4 * mib})
	largeVol, err := s.Volume("large")
	if err != nil {
		t.Fatal(err)
	}
	if method == quota.MethodProject && (third.Limit.Project == largeVol.Limit.Project || third.Limit.Project == vol.Limit.Project) {
		t.Errorf("after a restart a new volume got project id %d, held by a live volume (large %d, small %d)",
			third.Limit.Project, largeVol.Limit.Project, vol.Limit.Project)
	}
	for _, id := range []string{"small", "large", "third"} {
		dir := s.path(volumeDirName(id))
		if err := s.Unmount(ctx, id, RemoveUpper); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("volume %s removed, its directory is left: %v", id, err)
		}
	}
	assertNoImageMounts(t, root)
}

// assertNoImageMounts fails when any mount of the kernel's lies under root
// besides root itself.
func assertNoImageMounts(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], root+"/") && !strings.Contains(f[4], "/mnt") {
			t.Errorf("left mounted: %s", f[4])
		}
	}
}

func TestProjectModeRefusedWithoutQuotas(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s, err := Open(ctx, Options{Root: t.TempDir(), NoSync: true, Quota: quota.Options{Mode: quota.ModeProject}})
	if err != nil {
		t.Fatal(err)
	}
	if err := quota.ProbeProject(s.Dir()); err == nil {
		t.Fatal("this kernel has project quotas: the refusal cannot be tested here")
	}
	img := pull(t, s, exampleImage(t))
	target := filepath.Join(t.TempDir(), "mnt")
	_, err = s.Mount(ctx, VolumeSpec{ID: "sized", Layers: chainOf(img), Target: target, Size: 8 * mib})
	if !errors.Is(err, ErrLimit) || !errors.Is(err, quota.ErrUnsupported) || !strings.Contains(err.Error(), "--quota=project") {
		t.Fatalf("a sized volume under --quota=project without quotas: %v", err)
	}
	if m, _ := overlay.IsMounted(target); m {
		t.Error("refused volume is mounted")
	}
	if _, err := s.Volume("sized"); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("refused volume left a record: %v", err)
	}
	// Unsized volumes are not affected.
	mountVolume(t, s, VolumeSpec{ID: "unsized", Layers: chainOf(img), Target: target})
	if err := s.Unmount(ctx, "unsized", RemoveUpper); err != nil {
		t.Fatal(err)
	}
	assertEmptyStoreButLayers(t, s)
}

func assertEmptyStoreButLayers(t *testing.T, s *Store) {
	t.Helper()
	vols, err := s.Volumes()
	if err != nil || len(vols) != 0 {
		t.Errorf("volumes left: %v %v", vols, err)
	}
}
