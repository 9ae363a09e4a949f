package quota

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/secondkernel"
)

const mib = 1 << 20

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: it makes loop devices and mounts (run the tests as root, as make test does)")
	}
}

// mountedImage makes an image of limit bytes under a new temp dir and
// mounts it, as a store would; the cleanup unmounts it.
func mountedImage(t *testing.T, limit int64) (path, dir string) {
	t.Helper()
	requireRoot(t)
	ctx := context.Background()
	base := t.TempDir()
	path, dir = filepath.Join(base, "upper.img"), filepath.Join(base, "upper")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := CreateImage(ctx, ImageOptions{Mkfs: "mkfs.ext4"}, path, limit); err != nil {
		t.Fatal(err)
	}
	if err := MountImage(ctx, path, dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := UnmountImage(ctx, path, dir); err != nil {
			t.Error(err)
		}
	})
	if err := SetImageLimit(ctx, path, dir, limit); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

func TestImageLimitsWrites(t *testing.T) {
	for _, limit := range []int64{4 * mib, 16 * mib, 64 * mib} {
		t.Run(strconv.Itoa(int(limit/mib))+"Mi", func(t *testing.T) {
			_, dir := mountedImage(t, limit)
			if err := os.Mkdir(filepath.Join(dir, "diff"), 0o755); err != nil {
				t.Fatal(err)
			}
			u, err := ImageUsage(dir)
			if err != nil {
				t.Fatal(err)
			}
			// What the limit counts: the diff directory's block, and the
			// block the reserve's extent tree may take.
			if u.Bytes != 4096 || u.Limit < limit-2*4096 || u.Limit > limit+2*4096 {
				t.Errorf("image with an empty diff/: usage %+v, want 4096 bytes of %d", u, limit)
			}
			n, stderr := secondkernel.FillAsPod(t, filepath.Join(dir, "diff", "fill"), int(2*limit/mib))
			if !strings.Contains(stderr, "No space left on device") {
				t.Errorf("writing twice the limit: dd said %q, want No space left on device", stderr)
			}
			// ext4 keeps back room for the worst case of the extent tree
			// blocks a delayed write may need.
			if n < limit-256*1024 || n > limit {
				t.Errorf("wrote %d bytes, want the limit %d (to within 256Ki below)", n, limit)
			}
			u, err = ImageUsage(dir)
			if err != nil {
				t.Fatal(err)
			}
			if u.Bytes < n || u.Bytes > limit {
				t.Errorf("full image: usage %d bytes, want between the file's %d and the limit %d", u.Bytes, n, limit)
			}
		})
	}
}

func TestImageGrowsLive(t *testing.T) {
	ctx := context.Background()
	path, dir := mountedImage(t, 16*mib)
	n, _ := secondkernel.FillAsPod(t, filepath.Join(dir, "a"), 32)
	if n > 17*mib {
		t.Fatalf("16Mi image took %d bytes", n)
	}
	if err := SetImageLimit(ctx, path, dir, 48*mib); err != nil {
		t.Fatal(err)
	}
	m, stderr := secondkernel.FillAsPod(t, filepath.Join(dir, "b"), 24)
	if m != 24*mib {
		t.Errorf("after growing by 32Mi, a 24Mi write stopped at %d bytes: %s", m, stderr)
	}
	if err := SetImageLimit(ctx, path, dir, 8*mib); !errors.Is(err, ErrShrink) {
		t.Errorf("a limit below what the volume holds: got %v, want ErrShrink", err)
	}
	// Within the headroom the image was formatted with: no resize.
	if err := SetImageLimit(ctx, path, dir, 1<<30); err != nil {
		t.Fatal(err)
	}
	u, err := ImageUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Limit != 1<<30 || u.Bytes < n+m || u.Bytes > n+m+mib {
		t.Errorf("grown to 1Gi with %d bytes written: usage %+v", n+m, u)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 1<<30 {
		t.Errorf("a sparse 20Gi image holding 40Mi takes %d bytes of the host's disk", used)
	}
}

func TestImageRemountKeepsData(t *testing.T) {
	ctx := context.Background()
	path, dir := mountedImage(t, 8*mib)
	if err := os.WriteFile(filepath.Join(dir, "kept"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	dev, err := loopOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	loop := dev.path
	_ = dev.close()
	if err := UnmountImage(ctx, path, dir); err != nil {
		t.Fatal(err)
	}
	// Autoclear: the device is free again once the mount is gone.
	if b, err := os.ReadFile("/sys/block/" + filepath.Base(loop) + "/loop/backing_file"); err == nil {
		t.Errorf("%s still backs %s after unmount", loop, strings.TrimSpace(string(b)))
	}
	if err := UnmountImage(ctx, path, dir); err != nil {
		t.Errorf("second unmount: %v", err)
	}
	if err := MountImage(ctx, path, dir); err != nil {
		t.Fatal(err)
	}
	if err := MountImage(ctx, path, dir); err != nil {
		t.Errorf("second mount: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "kept"))
	if string(b) != "hello" {
		t.Errorf("after remount: %q, %v", b, err)
	}
}

func TestImageRefusesWhatIsNotOurs(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	base := t.TempDir()
	dir := filepath.Join(base, "upper")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	notExt4 := filepath.Join(base, "zeros.img")
	if err := os.WriteFile(notExt4, make([]byte, 4*mib), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link.img")
	if err := os.Symlink(notExt4, link); err != nil {
		t.Fatal(err)
	}
	tmpfs := filepath.Join(base, "tmpfs")
	if err := os.Mkdir(tmpfs, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", tmpfs, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Unmount(tmpfs, 0) }()
	for _, tc := range []struct {
		name, path, dir, want string
	}{
		{"not ext4", notExt4, dir, "not an ext4 filesystem"},
		{"symlink", link, dir, "too many levels of symbolic links"},
		{"someone else's mount", notExt4, tmpfs, "not a volume image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := MountImage(ctx, tc.path, tc.dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("MountImage: %v, want an error saying %q", err, tc.want)
			}
			if err := UnmountImage(ctx, tc.path, tc.dir); tc.dir == tmpfs && err == nil {
				t.Error("UnmountImage took a mount it did not make")
			}
		})
	}
	var st unix.Statfs_t
	if err := unix.Statfs(tmpfs, &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("the tmpfs is gone: %v", err)
	}
	for _, size := range []int64{0, MinLimit - 1, MaxLimit + 1} {
		if err := CreateImage(ctx, ImageOptions{Mkfs: "mkfs.ext4"}, filepath.Join(base, "x.img"), size); err == nil {
			t.Errorf("CreateImage of %d bytes: no error", size)
		}
	}
	if err := CreateImage(ctx, ImageOptions{Mkfs: "no-such-mkfs"}, filepath.Join(base, "y.img"), 4*mib); !errors.Is(err, ErrUnsupported) {
		t.Errorf("CreateImage without mkfs: %v, want ErrUnsupported", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "y.img.tmp")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed CreateImage left its temp file: %v", err)
	}
}

// TestImageGivesSpaceBack: what a pod deletes is given back to the host's
// disk (the image is mounted with discard, which the loop device turns
// into holes punched in the sparse file).
func TestImageGivesSpaceBack(t *testing.T) {
	path, dir := mountedImage(t, 64*mib)
	held := func() int64 {
		t.Helper()
		unix.Sync()
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	before := held()
	if n, stderr := secondkernel.FillAsPod(t, filepath.Join(dir, "big"), 32); n != 32*mib {
		t.Fatalf("32 MiB write into a 64Mi image stopped at %d: %s", n, stderr)
	}
	written := held()
	if written-before < 32*mib {
		t.Fatalf("the image holds %d bytes more after a 32 MiB write, want at least 32 MiB", written-before)
	}
	if err := os.Remove(filepath.Join(dir, "big")); err != nil {
		t.Fatal(err)
	}
	if after := held(); written-after < 30*mib {
		t.Errorf("deleting 32 MiB gave back %d bytes of the host's disk (image held %d, now %d)", written-after, written, after)
	}
}
