package secondkernel

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The harness's own tests: outer ones that boot the guest (TestBoot...),
// the inner ones they run (TestInner..., skipped on the host), and plain
// unit tests.

func TestInitScriptQuotesAndOrder(t *testing.T) {
	opts := Options{Run: "^TestX$", Filesystems: []string{"xfs", "ext4"}, Modules: []string{"fs/overlayfs/overlay.ko"},
		Env: []string{"A=it's"}, Timeout: time.Minute}
	s := initScript(opts, "/tmp/w 1", "/tmp/go build/x.test", "/src/p")
	for _, want := range []string{
		"W='/tmp/w 1'\n",
		"M=/usr/lib/uml/modules/$(uname -r)/kernel\n",
		`insmod "$M"/'drivers/block/loop.ko'`,
		`insmod "$M"/'fs/overlayfs/overlay.ko'`,
		`'mkfs.xfs' '-q' '-K' "$dev"`,
		`'mkfs.ext4' '-q' '-b' '4096' '-O' 'project,quota' "$dev"`,
		`mount -t ext4 -o prjquota "$dev" '/tmp/w 1/ext4'`,
		`LAYERSET_SECONDKERNEL_FS_XFS='/tmp/w 1/xfs'`,
		`'A=it'\''s'`,
		`'/tmp/go build/x.test' '-test.v' '-test.run' '^TestX$' '-test.count' '1' '-test.timeout' '45s'`,
	} {
		if !strings.Contains(s, want) {
			t.Errorf("init script lacks %q:\n%s", want, s)
		}
	}
	// Every way out powers off: init must not exit.
	if !strings.HasSuffix(s, "off\n") {
		t.Errorf("init script does not end in off:\n%s", s)
	}
	if a, b := strings.Index(s, "devtmpfs /dev"), strings.Index(s, "losetup"); a < 0 || b < a {
		t.Errorf("devtmpfs must be mounted before losetup runs:\n%s", s)
	}
}

func TestInitScriptIsValidSh(t *testing.T) {
	s := initScript(Options{Run: "x", Filesystems: []string{"xfs", "ext4"}, Env: []string{"Q='\"$x"}}, "/w", "/e", "/d")
	p := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sh", "-n", p).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v\n%s\n%s", err, out, s)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"no run", Options{}, "Options.Run is empty"},
		{"unknown fs", Options{Run: "x", Filesystems: []string{"btrfs"}}, `"btrfs" is not one of`},
		{"fs twice", Options{Run: "x", Filesystems: []string{"xfs", "xfs"}}, "named twice"},
		{"absolute module", Options{Run: "x", Modules: []string{"/lib/x.ko"}}, "not a path relative"},
		{"module escapes", Options{Run: "x", Modules: []string{"../x.ko"}}, "not a path relative"},
		{"env", Options{Run: "x", Env: []string{"NOEQUALS"}}, "not KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := (Options{Run: "x", Filesystems: []string{"xfs", "ext4"}, Env: []string{"A="}}).validate(); err != nil {
		t.Fatal(err)
	}
}

func TestPassed(t *testing.T) {
	out := []byte("=== RUN   TestA\n--- PASS: TestA (0.01s)\n=== RUN   TestAB\n--- SKIP: TestAB (0.00s)\n" +
		"    --- PASS: TestC/sub (0.00s)\n--- FAIL: TestC (0.00s)\n")
	for name, want := range map[string]bool{"TestA": true, "TestAB": false, "TestC/sub": true, "TestC": false, "Test": false} {
		if got := passed(out, name); got != want {
			t.Errorf("passed(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestInnerTimeout(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		0:                DefaultTimeout - time.Minute,
		20 * time.Second: 15 * time.Second,
		time.Second:      time.Second,
		time.Hour:        time.Hour - time.Minute,
	} {
		if got := (Options{Timeout: d}).innerTimeout(); got != want {
			t.Errorf("innerTimeout(%s) = %s, want %s", d, got, want)
		}
	}
}

func TestMissingModuleNamesThePackage(t *testing.T) {
	_, err := run(context.Background(), Options{Run: "x", Modules: []string{"fs/no-such.ko"}}, t.TempDir(), t.Logf)
	if err == nil || !strings.Contains(err.Error(), "module fs/no-such.ko") || !strings.Contains(err.Error(), "user-mode-linux") ||
		!strings.Contains(err.Error(), "bash hack/test-packages.sh") {
		t.Fatalf("run = %v, want a missing-module error naming the package and hack/test-packages.sh", err)
	}
}

// TestBoot boots the guest with both filesystems and runs TestInnerHarness
// in it.
func TestBoot(t *testing.T) {
	Run(t, Options{Run: "^TestInnerHarness$", Want: []string{"TestInnerHarness"}, Filesystems: []string{"xfs", "ext4"},
		Modules: []string{"fs/overlayfs/overlay.ko"}, Env: []string{"SECONDKERNEL_TEST_VALUE=a b'c"}})
}

// TestInnerHarness checks, in the guest, what Run promises its inner tests.
func TestInnerHarness(t *testing.T) {
	if !Inside() {
		t.Skip("runs in the second kernel, from TestBoot")
	}
	if got := os.Getenv("SECONDKERNEL_TEST_VALUE"); got != "a b'c" {
		t.Errorf("Options.Env: SECONDKERNEL_TEST_VALUE = %q", got)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	t.Logf("guest kernel %s", unix.ByteSliceToString(u.Release[:]))
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		t.Fatal(err)
	}
	for _, fs := range []string{"xfs", "ext4"} {
		dir := Filesystem(t, fs)
		line := mountLine(string(mounts), dir)
		if !strings.HasPrefix(line, "/dev/loop") || !strings.Contains(line, " "+fs+" ") || !strings.Contains(line, "prjquota") {
			t.Errorf("%s: mount line %q, want a %s on a loop device with prjquota", dir, line, fs)
		}
	}
	if line := mountLine(string(mounts), "/dev"); !strings.HasPrefix(line, "devtmpfs ") {
		t.Errorf("/dev: mount line %q, want the guest's devtmpfs", line)
	}
	modules, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"loop", "quota_v2", "quota_tree", "overlay"} {
		if !strings.Contains("\n"+string(modules), "\n"+m+" ") {
			t.Errorf("module %s not loaded:\n%s", m, modules)
		}
	}
	// Everything the guest writes is under the outer test's directory.
	work := filepath.Dir(Filesystem(t, "xfs"))
	if tmp := t.TempDir(); !strings.HasPrefix(tmp, work+"/") {
		t.Errorf("t.TempDir() = %s, want it under %s", tmp, work)
	}

	out, err := Unprivileged(context.Background(), "grep", "^Cap", "/proc/self/status").CombinedOutput()
	if err != nil {
		t.Fatalf("Unprivileged grep: %v\n%s", err, out)
	}
	const capSysResource = 24
	for _, field := range []string{"CapEff", "CapBnd", "CapInh"} {
		v, ok := capField(string(out), field)
		if !ok {
			t.Fatalf("no %s in\n%s", field, out)
		}
		if v&(1<<capSysResource) != 0 {
			t.Errorf("Unprivileged: %s %#x holds CAP_SYS_RESOURCE", field, v)
		}
		if field == "CapEff" && v&(1<<21) == 0 { // CAP_SYS_ADMIN: only the one capability is dropped
			t.Errorf("Unprivileged: CapEff %#x lost CAP_SYS_ADMIN too", v)
		}
	}
}

// TestBootFailures checks that an inner failure and a wanted test that
// never ran both fail Run, with the inner output in the error.
func TestBootFailures(t *testing.T) {
	_, err := run(context.Background(), Options{Run: "^TestInner(Fails|Passes)$", Want: []string{"TestInnerPasses", "TestInnerNever", "TestInnerFails"},
		Env: []string{"SECONDKERNEL_TEST_FAIL=1"}}, t.TempDir(), t.Logf)
	if err == nil {
		t.Fatal("run succeeded, want it to fail")
	}
	msg := err.Error()
	for _, want := range []string{"the inner tests exited 1", "inner test TestInnerNever did not report PASS",
		"inner test TestInnerFails did not report PASS", "--- inner output:", "failing on purpose"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "TestInnerPasses did not") {
		t.Errorf("TestInnerPasses passed, yet the error says it did not:\n%s", msg)
	}
}

func TestInnerPasses(t *testing.T) {
	if !Inside() {
		t.Skip("runs in the second kernel, from TestBootFailures")
	}
}

func TestInnerFails(t *testing.T) {
	if !Inside() || os.Getenv("SECONDKERNEL_TEST_FAIL") != "1" {
		t.Skip("runs in the second kernel, from TestBootFailures")
	}
	t.Error("failing on purpose")
}

// TestBootHang checks that a guest that never ends is killed at Timeout,
// with nothing of it left.
func TestBootHang(t *testing.T) {
	const timeout = 15 * time.Second
	work := t.TempDir()
	res, err := run(context.Background(), Options{Run: "^TestInnerHang$", Timeout: timeout, Env: []string{"SECONDKERNEL_TEST_HANG=1"}}, work, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "did not end within 15s and was killed") {
		t.Fatalf("run = %v, want a timeout", err)
	}
	if res.elapsed < timeout || res.elapsed > timeout+10*time.Second {
		t.Errorf("a hung guest ended after %s, want a little over %s", res.elapsed, timeout)
	}
	assertNoGuestLeft(t, work)
}

// TestInnerHang replaces the test binary by a sleep that outlives any
// timeout: a hang that -test.timeout cannot end.
func TestInnerHang(t *testing.T) {
	if !Inside() || os.Getenv("SECONDKERNEL_TEST_HANG") != "1" {
		t.Skip("runs in the second kernel, from TestBootHang")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal(syscall.Exec(sleep, []string{"sleep", "3600"}, os.Environ()))
}

// TestBootPanic checks that a guest kernel panic fails Run at once.
func TestBootPanic(t *testing.T) {
	work := t.TempDir()
	res, err := run(context.Background(), Options{Run: "^TestInnerPanic$", Timeout: time.Minute, Env: []string{"SECONDKERNEL_TEST_PANIC=1"}}, work, t.Logf)
	if err == nil || !strings.Contains(err.Error(), "the guest kernel panicked") {
		t.Fatalf("run = %v, want a kernel panic", err)
	}
	if res.elapsed > 30*time.Second {
		t.Errorf("a panicked guest ended after %s", res.elapsed)
	}
	assertNoGuestLeft(t, work)
}

// TestInnerPanic crashes the guest kernel through sysrq.
func TestInnerPanic(t *testing.T) {
	if !Inside() || os.Getenv("SECONDKERNEL_TEST_PANIC") != "1" {
		t.Skip("runs in the second kernel, from TestBootPanic")
	}
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("c"), 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Minute)
}

// assertNoGuestLeft checks that no host process runs the guest of work:
// user-mode Linux's host processes all carry its command line.
func assertNoGuestLeft(t *testing.T, work string) {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), "init="+filepath.Join(work, initFile)) {
			stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
			t.Errorf("process %s of the guest is left: %s", e.Name(), stat)
		}
	}
}

func mountLine(mounts, dir string) string {
	for _, l := range strings.Split(mounts, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == dir {
			return l
		}
	}
	return ""
}

func capField(status, name string) (uint64, bool) {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}
