// Package secondkernel runs a test's inner half in a second kernel: Debian's
// user-mode Linux (package user-mode-linux, Linux 6.1 built as an ordinary
// program), for what the build machines' kernel lacks, such as project
// quotas (it is built without CONFIG_QUOTA).
//
// An outer test calls Run, which boots the guest with the host's root
// filesystem through hostfs and, as its init, a script that loads the loop
// and quota modules, makes the asked-for filesystems on loop devices of its
// own kernel, and runs the calling test binary again with -test.run. The
// inner tests check Inside and skip on the host, which is harmless: Run
// fails the outer test unless each of Options.Want reported PASS inside.
//
//	func TestQuotasInSecondKernel(t *testing.T) {
//		secondkernel.Run(t, secondkernel.Options{Run: "^TestInner", Want: []string{"TestInnerXFS"}, Filesystems: []string{"xfs"}})
//	}
//
//	func TestInnerXFS(t *testing.T) {
//		if !secondkernel.Inside() {
//			t.Skip("runs in the second kernel, from TestQuotasInSecondKernel")
//		}
//		dir := secondkernel.Filesystem(t, "xfs")
//		...
//	}
//
// The guest's loop devices are its own kernel's, so nothing is attached on
// the host; everything the guest writes is under one temporary directory of
// the outer test, and its processes are one process group, killed when the
// guest ends, hangs past Options.Timeout or panics.
package secondkernel

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Options for Run.
type Options struct {
	// Run is the -test.run pattern of the inner tests.
	Run string
	// Want names inner tests that must report "--- PASS": an inner test
	// that failed, skipped or did not run fails the outer test.
	Want []string
	// Filesystems are made inside the guest, each on a sparse file attached
	// to a loop device and mounted with project quotas: "xfs" (mkfs.xfs,
	// mount -o prjquota) and "ext4" (mkfs.ext4 -O project,quota, mount -o
	// prjquota). Filesystem finds their mount directories.
	Filesystems []string
	// Modules are extra modules to load, relative to the guest kernel's
	// module directory, e.g. "fs/overlayfs/overlay.ko"; loop and the quota
	// formats are always loaded.
	Modules []string
	// Timeout bounds the whole boot, inner tests included (default
	// DefaultTimeout). The inner test binary gets a -test.timeout a little
	// shorter, so that a hung inner test prints its goroutines first.
	Timeout time.Duration
	// Env is KEY=VALUE settings for the inner tests, on top of the few the
	// harness sets (PATH, HOME, TMPDIR and its own).
	Env []string
}

// DefaultTimeout is Options.Timeout when it is zero: a boot takes a few
// seconds, the guest runs a few times slower than the host.
const DefaultTimeout = 5 * time.Minute

// The environment of the inner tests.
const (
	// envInside is set to "1" in the inner test process.
	envInside = "LAYERSET_SECONDKERNEL"
	// envFSPrefix + upper-case type (LAYERSET_SECONDKERNEL_FS_XFS) is the
	// mount directory of a filesystem of Options.Filesystems.
	envFSPrefix = "LAYERSET_SECONDKERNEL_FS_"
)

// Run boots the second kernel and runs the calling test binary in it with
// -test.v -test.run opts.Run, streaming the guest's console into t.Log. It
// fails t if the inner tests exit non-zero, if any of opts.Want did not
// pass, if the guest panics or outlasts opts.Timeout, or if a process of it
// is left behind. A missing package (user-mode-linux, kmod, xfsprogs, ...)
// is a failure, never a skip: `bash hack/test-packages.sh` installs them.
func Run(t *testing.T, opts Options) {
	t.Helper()
	res, err := run(context.Background(), opts, t.TempDir(), t.Logf)
	if res.elapsed > 0 {
		t.Logf("second kernel: %s in all: boot and setup %s, inner tests %s",
			res.elapsed.Round(10*time.Millisecond), res.setup.Round(10*time.Millisecond),
			(res.elapsed - res.setup).Round(10*time.Millisecond))
	}
	if err != nil {
		t.Fatal(err)
	}
}

// Inside reports whether this process is the inner test binary, in the
// second kernel.
func Inside() bool {
	return os.Getenv(envInside) == "1"
}

// Filesystem returns the mount directory of the fstype ("xfs", "ext4")
// filesystem that Run made for the inner tests; t fails if there is none.
func Filesystem(t *testing.T, fstype string) string {
	t.Helper()
	if !Inside() {
		t.Fatalf("secondkernel.Filesystem(%q) outside the second kernel: call it only when Inside()", fstype)
	}
	dir := os.Getenv(fsEnv(fstype))
	if dir == "" {
		t.Fatalf("the second kernel has no %s filesystem: name it in Options.Filesystems", fstype)
	}
	return dir
}

// Unprivileged returns name with args run through setpriv without
// CAP_SYS_RESOURCE, in its bounding set as well, so that no program it
// runs regains it. A writer holding that capability ignores ext4's quota
// limits (and reserved blocks); a pod's processes do not hold it, and a
// test of a limit must write as they do.
func Unprivileged(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "setpriv",
		append([]string{"--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--", name}, args...)...)
}

func fsEnv(fstype string) string {
	return envFSPrefix + strings.ToUpper(fstype)
}

// result is what a boot measured.
type result struct {
	// elapsed is the whole boot; setup is until the inner tests started.
	elapsed, setup time.Duration
}

func (o Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// innerTimeout is the inner binary's -test.timeout: shorter than the
// boot's by what booting and making filesystems take, so that a hung inner
// test panics with its goroutines rather than being killed silently.
func (o Options) innerTimeout() time.Duration {
	d := o.timeout()
	return max(d-min(d/4, time.Minute), time.Second)
}

// validate refuses options Run cannot honour, before anything boots.
func (o Options) validate() error {
	if o.Run == "" {
		return fmt.Errorf("secondkernel: Options.Run is empty: it would run every test of the binary, this outer one too")
	}
	seen := map[string]bool{}
	for _, fs := range o.Filesystems {
		if _, ok := filesystems[fs]; !ok {
			return fmt.Errorf("secondkernel: filesystem %q is not one of xfs, ext4", fs)
		}
		if seen[fs] {
			return fmt.Errorf("secondkernel: filesystem %q named twice", fs)
		}
		seen[fs] = true
	}
	for _, m := range o.Modules {
		if m == "" || strings.HasPrefix(m, "/") || strings.Contains(m, "..") {
			return fmt.Errorf("secondkernel: module %q is not a path relative to the module directory", m)
		}
	}
	for _, kv := range o.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("secondkernel: Env entry %q is not KEY=VALUE", kv)
		}
	}
	return nil
}

// FillAsPod writes n MiB of zeros to file, synced, as a pod's process
// would (through Unprivileged), in 64 KiB writes so that where a limit
// stops it is seen to 64 KiB. It returns the file's size and, when the
// write failed, what dd said: "No space left on device" or "Disk quota
// exceeded" at a limit.
func FillAsPod(t testing.TB, file string, n int) (size int64, stderr string) {
	t.Helper()
	out, err := Unprivileged(context.Background(), "dd", "if=/dev/zero", "of="+file, "bs=64K",
		"count="+strconv.Itoa(16*n), "conv=fsync", "status=none").CombinedOutput()
	if err == nil {
		out = nil
	}
	fi, serr := os.Stat(file)
	if serr != nil {
		t.Fatalf("%v (dd: %s)", serr, out)
	}
	return fi.Size(), string(out)
}
