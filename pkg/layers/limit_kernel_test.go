package layers

import (
	"os/exec"
	"testing"

	"github.com/layerset/layerset-csi/internal/secondkernel"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// TestLimitedVolumesInSecondKernel runs the limited-volume scenario where
// project quotas exist: in user-mode Linux 6.1, on an XFS and an ext4 with
// prjquota, with --quota=auto (which must pick project quotas there) and
// once with the image fallback. That kernel predates lowerdir+, so the
// volumes there are mounted by the classic mount(2) path.
func TestLimitedVolumesInSecondKernel(t *testing.T) {
	needRoot(t)
	secondkernel.Run(t, secondkernel.Options{
		Run:         "^TestInnerLimitedVolumes",
		Want:        []string{"TestInnerLimitedVolumes/project-xfs", "TestInnerLimitedVolumes/project-ext4", "TestInnerLimitedVolumes/fallback-ext4"},
		Filesystems: []string{"xfs", "ext4"},
		Modules:     []string{"fs/overlayfs/overlay.ko"},
	})
}

func TestInnerLimitedVolumes(t *testing.T) {
	if !secondkernel.Inside() {
		t.Skip("runs inside the second kernel, from TestLimitedVolumesInSecondKernel")
	}
	// The test registry listens on loopback, which a fresh guest has down.
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	for _, tc := range []struct {
		name, fs string
		mode     quota.Mode
		method   quota.Method
	}{
		{"fallback-ext4", "ext4", quota.ModeFallback, quota.MethodImage},
		{"project-xfs", "xfs", quota.ModeAuto, quota.MethodProject},
		{"project-ext4", "ext4", quota.ModeProject, quota.MethodProject},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := secondkernel.Filesystem(t, tc.fs) + "/" + tc.name
			testLimitedVolumes(t, root, tc.mode, tc.method)
		})
	}
}
