package quota

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/layerset/layerset-csi/internal/secondkernel"
)

// TestImageResizeInSecondKernel raises an image's limit past the size it
// was formatted with, which takes ext4's online resize and so
// CAP_SYS_RESOURCE: our build machines withhold it from root, the second
// kernel's root has it, as a privileged node plugin does.
func TestImageResizeInSecondKernel(t *testing.T) {
	requireRoot(t)
	secondkernel.Run(t, secondkernel.Options{
		Run: "^TestInnerImageResize", Want: []string{"TestInnerImageResize"}, Filesystems: []string{"ext4"},
	})
}

func TestInnerImageResize(t *testing.T) {
	if !secondkernel.Inside() {
		t.Skip("runs inside the second kernel, from TestImageResizeInSecondKernel")
	}
	ctx := context.Background()
	base := secondkernel.Filesystem(t, "ext4")
	path, dir := filepath.Join(base, "upper.img"), filepath.Join(base, "upper")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := CreateImage(ctx, ImageOptions{Mkfs: "mkfs.ext4"}, path, 16*mib); err != nil {
		t.Fatal(err)
	}
	if err := MountImage(ctx, path, dir); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = UnmountImage(ctx, path, dir) }()
	if err := SetImageLimit(ctx, path, dir, 16*mib); err != nil {
		t.Fatal(err)
	}
	formatted := formatSize(16 * mib)
	for _, limit := range []int64{formatted, 3 << 30, 40 << 30} {
		if err := SetImageLimit(ctx, path, dir, limit); err != nil {
			t.Fatalf("raise to %d (formatted at %d): %v", limit, formatted, err)
		}
		u, err := ImageUsage(dir)
		if err != nil {
			t.Fatal(err)
		}
		if u.Limit < limit-2*4096 || u.Limit > limit+2*4096 || u.Bytes > mib {
			t.Errorf("raised to %d: usage %+v", limit, u)
		}
	}
}
