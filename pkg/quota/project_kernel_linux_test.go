package quota

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/secondkernel"
)

// The inner tests of TestProjectQuotasInSecondKernel: they run in
// user-mode Linux (CONFIG_QUOTA), on filesystems secondkernel made there,
// and skip anywhere else, which the outer test turns into a failure.

const (
	projMiB = 1 << 20 // (image_linux_test.go has its own mib)
	// A write stops exactly where its next block would pass the hard
	// limit: both filesystems reserve every block of a buffered write
	// against the quota when it is written (delayed allocation included),
	// and the last write is cut short to fit. The file falls short of the
	// limit only by what else the project holds: on ext4 its directories,
	// a 4 KiB block each (measured in user-mode Linux 6.1: limit - 8 KiB
	// for the two), on XFS nothing (small directories live in the inode:
	// the file is the limit to the byte); extent tree blocks of a
	// fragmented file would add a few more. No file ever passes its
	// limit: its blocks are all charged. So: [limit - 64 KiB, limit].
	fillShortBy = 64 << 10
	fillOverBy  = 0
)

func skipOutside(t *testing.T) {
	t.Helper()
	if !secondkernel.Inside() {
		t.Skip("runs in the second kernel, from TestProjectQuotasInSecondKernel")
	}
}

// What a writer past a project's hard limit is told. XFS answers ENOSPC,
// not EDQUOT, for project quotas (xfs_trans_dqresv): to a program in the
// directory tree the limit looks like a full filesystem, which is what
// df there shows too. ext4 answers EDQUOT.
const (
	xfsFull  = "No space left on device"
	ext4Full = "Disk quota exceeded"
)

func TestInnerProjectQuotaXFS(t *testing.T) {
	skipOutside(t)
	testProjectQuota(t, secondkernel.Filesystem(t, "xfs"), xfsFull)
}

func TestInnerProjectQuotaExt4(t *testing.T) {
	skipOutside(t)
	testProjectQuota(t, secondkernel.Filesystem(t, "ext4"), ext4Full)
}

// testProjectQuota checks the project calls on mnt; full is the error
// text of a write past a limit.
func testProjectQuota(t *testing.T, mnt, full string) {
	if err := ProbeProject(mnt); err != nil {
		t.Fatalf("ProbeProject(%s) = %v, want nil", mnt, err)
	}
	type project struct {
		id    uint32
		limit int64
		dir   string
	}
	projects := []project{{id: 1001, limit: 8 * projMiB}, {id: 1002, limit: 16 * projMiB}}
	for i := range projects {
		p := &projects[i]
		p.dir = filepath.Join(mnt, "p"+itoa(p.id))
		mustMkdir(t, p.dir)
		if err := SetProject(p.dir, p.id); err != nil {
			t.Fatal(err)
		}
		if id, err := ProjectOf(p.dir); err != nil || id != p.id {
			t.Fatalf("ProjectOf(%s) = %d, %v; want %d", p.dir, id, err, p.id)
		}
		// Inherited by what is made below: the upper's own files.
		sub := filepath.Join(p.dir, "sub")
		mustMkdir(t, sub)
		if id, err := ProjectOf(sub); err != nil || id != p.id {
			t.Fatalf("ProjectOf(%s) = %d, %v; want %d inherited", sub, id, err, p.id)
		}
		if err := SetProjectLimit(p.dir, p.id, p.limit); err != nil {
			t.Fatal(err)
		}
		u, err := ProjectUsage(mnt, p.id)
		if err != nil {
			t.Fatal(err)
		}
		if u.Limit != p.limit || u.FreeInodes != -1 || u.Inodes < 2 || u.Bytes > 64<<10 {
			t.Fatalf("project %d before writing: %+v, want limit %d, FreeInodes -1, 2+ inodes, little space", p.id, u, p.limit)
		}
		t.Logf("project %d before writing: %+v", p.id, u)
	}

	// Fill each past its limit; the other's writes must not count.
	for _, p := range projects {
		f := filepath.Join(p.dir, "sub", "fill")
		size := fillUntilFull(t, f, 32, full)
		assertNearLimit(t, p.id, size, p.limit)
		u, err := ProjectUsage(mnt, p.id)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("project %d full: file %d bytes, limit - file = %d; usage %+v", p.id, size, p.limit-size, u)
		if u.Bytes < size || u.Bytes > p.limit || u.Limit != p.limit {
			t.Errorf("project %d: usage %+v, want bytes in [%d, %d] and limit %d", p.id, u, size, p.limit, p.limit)
		}
	}

	// Raising a limit lets the same writer go on at once.
	p := projects[0]
	f := filepath.Join(p.dir, "sub", "fill")
	const raised = 24 * projMiB
	if err := SetProjectLimit(p.dir, p.id, raised); err != nil {
		t.Fatal(err)
	}
	size := fillUntilFull(t, f, 32, full)
	assertNearLimit(t, p.id, size, raised)
	t.Logf("project %d raised to %d: file %d bytes, limit - file = %d", p.id, raised, size, raised-size)

	// 0 removes it: the next 8 MiB all land.
	if err := SetProjectLimit(p.dir, p.id, 0); err != nil {
		t.Fatal(err)
	}
	if u, err := ProjectUsage(mnt, p.id); err != nil || u.Limit != 0 {
		t.Fatalf("ProjectUsage after removing the limit = %+v, %v; want limit 0", u, err)
	}
	if out, err := ddAppend(f, 8).CombinedOutput(); err != nil {
		t.Fatalf("writing 8 MiB more without a limit: %v\n%s", err, out)
	}
	if got := mustSize(t, f); got != size+8*projMiB {
		t.Errorf("without a limit the file grew to %d, want %d", got, size+8*projMiB)
	}

	// Ids of the limiter's default range, far above the small ones.
	big := filepath.Join(mnt, "big")
	mustMkdir(t, big)
	const bigID = 2_000_000_001
	if err := SetProject(big, bigID); err != nil {
		t.Fatal(err)
	}
	if id, err := ProjectOf(big); err != nil || id != bigID {
		t.Fatalf("ProjectOf(%s) = %d, %v; want %d", big, id, err, bigID)
	}
	// Not a multiple of 1 KiB: rounded up to whole quota blocks, which ext4
	// keeps; XFS keeps limits in its own blocks and rounds up again, to
	// 4 KiB.
	if err := SetProjectLimit(big, bigID, 5*projMiB+1); err != nil {
		t.Fatal(err)
	}
	if u, err := ProjectUsage(mnt, bigID); err != nil || u.Limit < 5*projMiB+1024 || u.Limit > 5*projMiB+4096 {
		t.Fatalf("ProjectUsage(%d) = %+v, %v; want a limit in [%d, %d]", bigID, u, err, 5*projMiB+1024, 5*projMiB+4096)
	} else {
		t.Logf("a limit of 5 MiB + 1 byte is kept as %d", u.Limit)
	}
	// A project never charged nor limited holds nothing.
	if u, err := ProjectUsage(mnt, 4242); err != nil || u != (Usage{FreeInodes: -1}) {
		t.Errorf("ProjectUsage(unused 4242) = %+v, %v; want nothing charged", u, err)
	}
}

// TestInnerProjectProbeReasons checks ProbeProject's explanations on
// filesystems that lack something, in a kernel that has quotas.
func TestInnerProjectProbeReasons(t *testing.T) {
	skipOutside(t)
	for _, tc := range []struct {
		name      string
		mount     func(t *testing.T) string
		fs, wants string
	}{
		{"tmpfs", func(t *testing.T) string { return tmpfsDir(t) }, "tmpfs", "tmpfs has no quotas"},
		{"hostfs root", func(*testing.T) string { return "/" }, "hostfs", "hostfs has no quotas"},
		{"xfs without prjquota", func(t *testing.T) string { return loopFS(t, []string{"mkfs.xfs", "-q", "-K"}, "") }, "xfs",
			"project quota accounting is off: mount it with -o prjquota"},
		{"xfs with pqnoenforce", func(t *testing.T) string { return loopFS(t, []string{"mkfs.xfs", "-q", "-K"}, "pqnoenforce") }, "xfs",
			"project quotas are accounted but not enforced: mount it with -o prjquota"},
		{"ext4 without quota features", func(t *testing.T) string { return loopFS(t, []string{"mkfs.ext4", "-q"}, "") }, "ext4",
			"project quota accounting is off: it needs the project and quota features"},
		{"ext4 without prjquota", func(t *testing.T) string { return loopFS(t, []string{"mkfs.ext4", "-q", "-O", "project,quota"}, "") }, "ext4",
			"project quotas are accounted but not enforced: it needs the project and quota features"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.mount(t)
			err := ProbeProject(dir)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("ProbeProject(%s) = %v, want ErrUnsupported", dir, err)
			}
			t.Logf("%v", err)
			assertContains(t, err.Error(), dir+" ("+tc.fs+"): project quotas not supported: ", tc.wants)
		})
	}
}

// loopFS makes a filesystem with mkfs on a sparse image in the test's
// temporary directory and mounts it through a loop device with options.
func loopFS(t *testing.T, mkfs []string, options string) string {
	t.Helper()
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	mustMkdir(t, mnt)
	if err := os.Truncate(mustCreate(t, img), 512*projMiB); err != nil {
		t.Fatal(err)
	}
	mustRun(t, append(mkfs, img)...)
	args := []string{"mount", "-o", "loop"}
	if options != "" {
		args[2] += "," + options
	}
	mustRun(t, append(args, img, mnt)...)
	t.Cleanup(func() {
		// The loop device goes with the mount: mount -o loop sets autoclear.
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	return mnt
}

// fillUntilFull appends up to mibs MiB to f as a pod would write (without
// CAP_SYS_RESOURCE), expects the write to stop with the error full, and
// returns the file's size.
func fillUntilFull(t *testing.T, f string, mibs int, full string) int64 {
	t.Helper()
	out, err := ddAppend(f, mibs).CombinedOutput()
	if err == nil {
		t.Fatalf("writing %d MiB into %s succeeded, want %q\n%s", mibs, f, full, out)
	}
	if !strings.Contains(string(out), full) {
		t.Fatalf("writing %d MiB into %s: %v, want %q\n%s", mibs, f, err, full, out)
	}
	return mustSize(t, f)
}

// ddAppend writes mibs MiB of zeros at the end of f, without
// CAP_SYS_RESOURCE.
func ddAppend(f string, mibs int) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	_ = cancel // the command ends long before; the context only bounds a hang
	return secondkernel.Unprivileged(ctx, "dd", "if=/dev/zero", "of="+f, "bs=1M", "count="+itoa(uint32(mibs)),
		"oflag=append", "conv=notrunc")
}

func assertNearLimit(t *testing.T, id uint32, size, limit int64) {
	t.Helper()
	if size < limit-fillShortBy || size > limit+fillOverBy {
		t.Errorf("project %d: the write stopped at %d bytes, want within [%d, %d] of its limit %d",
			id, size, limit-fillShortBy, limit+fillOverBy, limit)
	}
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustSize(t *testing.T, f string) int64 {
	t.Helper()
	st, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func itoa(n uint32) string {
	return strconv.FormatUint(uint64(n), 10)
}
