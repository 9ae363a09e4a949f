package quota

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/secondkernel"
)

// Tests of project quotas on this machine's kernel: what ProbeProject says
// where they are missing, and the argument checks. The quotas themselves
// are tested in a second kernel (project_kernel_linux_test.go), since the
// build machines' kernel has no CONFIG_QUOTA.

// hostHasQuotactl reports whether this kernel has quotactl_fd at all.
func hostHasQuotactl() bool {
	return !errors.Is(quotactlFd(-1, qcmd(qGetInfo, prjQuota), 0, nil), unix.ENOSYS)
}

// tmpfsDir mounts a small tmpfs of its own (the test runs as root, as
// every mount test here does) and returns a directory in it.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s (the tests run as root): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	sub := filepath.Join(dir, "d")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestProbeProjectHostTmpfs(t *testing.T) {
	dir := tmpfsDir(t)
	err := ProbeProject(dir)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ProbeProject(tmpfs) = %v, want an error wrapping ErrUnsupported", err)
	}
	want := []string{dir + " (tmpfs): project quotas not supported: "}
	if hostHasQuotactl() {
		want = append(want, "tmpfs has no quotas")
	} else {
		want = append(want, "is built without CONFIG_QUOTA and CONFIG_QUOTACTL", "quotactl_fd: function not implemented")
	}
	assertContains(t, err.Error(), want...)
}

func TestProbeProjectHostRoot(t *testing.T) {
	err := ProbeProject("/")
	fs := rootFSType(t)
	if err == nil {
		t.Logf("/ (%s) enforces project quotas", fs)
		return
	}
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("ProbeProject(/) = %v, want nil or an error wrapping ErrUnsupported", err)
	}
	t.Logf("ProbeProject(/): %v", err)
	if strings.HasPrefix(fs, "filesystem type ") {
		t.Fatalf("the root's filesystem has no name here: %s", fs)
	}
	assertContains(t, err.Error(), "/ ("+fs+"): project quotas not supported: ")
	switch {
	case !hostHasQuotactl():
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			t.Fatal(err)
		}
		assertContains(t, err.Error(), "Linux "+unix.ByteSliceToString(u.Release[:])+" is built without CONFIG_QUOTA")
	case fs == "ext4":
		// Our build machines: CONFIG_QUOTA=y but neither CONFIG_QFMT_V2
		// nor CONFIG_XFS_QUOTA, and a root ext4 made without quotas.
		assertContains(t, err.Error(), "project quota accounting is off: it needs the project and quota features",
			"quotactl_fd Q_GETINFO: no such process")
	}
}

func rootFSType(t *testing.T) string {
	t.Helper()
	fd, err := openDirNoFollow("/")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	return fsTypeName(fd)
}

// TestProjectOpsRefuseNonDirectories checks every call on a symlink (to a
// directory: it is still not followed), a regular file and a missing path.
func TestProjectOpsRefuseNonDirectories(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	file := filepath.Join(base, "file")
	link := filepath.Join(base, "link")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	before, beforeErr := ProjectOf(target)

	ops := map[string]func(string) error{
		"ProbeProject":    ProbeProject,
		"SetProject":      func(p string) error { return SetProject(p, 1001) },
		"ProjectOf":       func(p string) error { _, err := ProjectOf(p); return err },
		"SetProjectLimit": func(p string) error { return SetProjectLimit(p, 1001, 1<<20) },
		"ProjectUsage":    func(p string) error { _, err := ProjectUsage(p, 1001); return err },
	}
	paths := []struct {
		name, path string
		errno      error
		msg        string
	}{
		// With O_DIRECTORY Linux answers ENOTDIR for a symlink, not ELOOP.
		{"symlink", link, unix.ENOTDIR, link + ": refusing a symbolic link (never followed)"},
		{"regular file", file, unix.ENOTDIR, file + ": not a directory"},
		{"missing", filepath.Join(base, "missing"), unix.ENOENT, "open " + filepath.Join(base, "missing")},
	}
	for opName, op := range ops {
		for _, p := range paths {
			t.Run(opName+"/"+p.name, func(t *testing.T) {
				err := op(p.path)
				if !errors.Is(err, p.errno) {
					t.Fatalf("%s(%s) = %v, want %v", opName, p.path, err, p.errno)
				}
				if errors.Is(err, ErrUnsupported) {
					t.Errorf("%s(%s) = %v: a wrong argument is not ErrUnsupported", opName, p.path, err)
				}
				assertContains(t, err.Error(), p.msg)
			})
		}
	}
	// The symlink's target was left alone.
	if after, afterErr := ProjectOf(target); after != before || (afterErr == nil) != (beforeErr == nil) {
		t.Errorf("the symlink's target changed: project %d (%v), was %d (%v)", after, afterErr, before, beforeErr)
	}
}

func TestSetProjectLimitRefusesNegative(t *testing.T) {
	err := SetProjectLimit(t.TempDir(), 1001, -1)
	if err == nil || !strings.Contains(err.Error(), "negative size -1") {
		t.Fatalf("SetProjectLimit(-1) = %v, want a negative size error", err)
	}
}

// TestProjectOpsOnTmpfsAreUnsupported checks that a filesystem without
// project ids or quotas makes each call fail with ErrUnsupported naming it.
func TestProjectOpsOnTmpfsAreUnsupported(t *testing.T) {
	dir := tmpfsDir(t)
	for name, err := range map[string]error{
		"SetProject":      SetProject(dir, 1001),
		"SetProjectLimit": SetProjectLimit(dir, 1001, 1<<20),
		"ProjectUsage":    func() error { _, err := ProjectUsage(dir, 1001); return err }(),
	} {
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), dir+" (tmpfs)") {
			t.Errorf("%s on tmpfs = %v, want ErrUnsupported naming %s (tmpfs)", name, err, dir)
		}
	}
	// Reading a project id needs no quotas: tmpfs answers 0.
	if id, err := ProjectOf(dir); err != nil || id != 0 {
		t.Errorf("ProjectOf(tmpfs) = %d, %v; want 0, nil", id, err)
	}
}

func TestKernelStructs(t *testing.T) {
	if got := unsafe.Sizeof(fsxattr{}); got != 28 {
		t.Errorf("fsxattr is %d bytes, struct fsxattr 28", got)
	}
	if got := unsafe.Sizeof(fsQuotaStatv{}); got != 160 {
		t.Errorf("fsQuotaStatv is %d bytes, struct fs_quota_statv 160", got)
	}
	if got := unsafe.Sizeof(ifDqinfo{}); got != 24 {
		t.Errorf("ifDqinfo is %d bytes, struct if_dqinfo 24", got)
	}
	if got := unsafe.Sizeof(ifDqblk{}); got != 72 {
		t.Errorf("ifDqblk is %d bytes, want 72 (struct if_dqblk is 68 or 72)", got)
	}
	if got := unsafe.Offsetof(fsQuotaStatv{}.Flags); got != 2 {
		t.Errorf("fs_quota_statv.qs_flags at %d, want 2", got)
	}
	// QCMD(Q_GETQUOTA, PRJQUOTA) as quota-tools computes it.
	if got := qcmd(qGetQuota, prjQuota); got != 0x80000702 {
		t.Errorf("QCMD(Q_GETQUOTA, PRJQUOTA) = %#x", got)
	}
	if got := qcmd(qXGetQStatV, prjQuota); got != 0x580802 {
		t.Errorf("QCMD(Q_XGETQSTATV, PRJQUOTA) = %#x", got)
	}
}

func TestOlderThan(t *testing.T) {
	for release, want := range map[string]bool{
		"5.13.0": true, "5.14.0": false, "4.19.0-25-amd64": true, "6.1.176": false,
		"6.18.44-fc-v1147": false, "5.4": true, "5.14-rc1": false, "junk": false, "5.x": false,
	} {
		if got := olderThan(release, 5, 14); got != want {
			t.Errorf("olderThan(%q, 5, 14) = %v, want %v", release, got, want)
		}
	}
}

func TestClampInt64(t *testing.T) {
	for _, tc := range []struct {
		v       uint64
		factors []uint64
		want    int64
	}{
		{8192, []uint64{quotaBlock}, 8 << 20},
		{0, []uint64{quotaBlock}, 0},
		{1 << 63, nil, 1<<63 - 1},
		{1 << 60, []uint64{quotaBlock}, 1<<63 - 1},
	} {
		if got := clampInt64(tc.v, tc.factors...); got != tc.want {
			t.Errorf("clampInt64(%d, %v) = %d, want %d", tc.v, tc.factors, got, tc.want)
		}
	}
}

// TestProjectQuotasInSecondKernel runs the project quota tests of
// project_kernel_linux_test.go in user-mode Linux, on an XFS and an ext4
// made there.
func TestProjectQuotasInSecondKernel(t *testing.T) {
	secondkernel.Run(t, secondkernel.Options{
		Run:         "^TestInnerProject",
		Want:        []string{"TestInnerProjectQuotaXFS", "TestInnerProjectQuotaExt4", "TestInnerProjectProbeReasons"},
		Filesystems: []string{"xfs", "ext4"},
	})
}

func assertContains(t *testing.T, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%q lacks %q", s, sub)
		}
	}
}
