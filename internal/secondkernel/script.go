package secondkernel

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// filesystem is how the guest makes one of Options.Filesystems.
type filesystem struct {
	// size of the sparse image: mkfs.xfs refuses filesystems below 300 MiB
	// (xfsprogs 5.19+), ext4 is content with less.
	size string
	// mkfs formats the loop device appended to it.
	mkfs []string
	// tool and pkg name the mkfs program and the Debian package holding it,
	// checked on the host (the guest runs the host's binaries) before boot.
	tool, pkg string
}

var filesystems = map[string]filesystem{
	// -K: no discard pass over a fresh sparse file.
	"xfs": {size: "512M", mkfs: []string{"mkfs.xfs", "-q", "-K"}, tool: "mkfs.xfs", pkg: "xfsprogs"},
	// project and quota: the hidden quota inodes, project quotas among them;
	// mounting with prjquota then turns their enforcement on. -b 4096: a
	// node's filesystem has 4 KiB blocks, mke2fs would give one this small
	// 1 KiB ones.
	"ext4": {size: "256M", mkfs: []string{"mkfs.ext4", "-q", "-b", "4096", "-O", "project,quota"}, tool: "mkfs.ext4", pkg: "e2fsprogs"},
}

// baseModules are always loaded: loop devices for the filesystems, the
// quota file format ext4's quota inodes use. XFS quota is built in.
var baseModules = []string{"drivers/block/loop.ko", "fs/quota/quota_tree.ko", "fs/quota/quota_v2.ko"}

// guestPath is PATH in the guest, and where Run looks for the tools on the
// host: the guest runs the host's binaries through hostfs.
var guestPath = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Files in the work directory.
const (
	statusFile = "status"    // the inner exit status, written by the init script
	innerFile  = "inner.out" // the inner tests' output
	initFile   = "init"      // the init script
	umlDirName = "uml"       // user-mode Linux's uml_dir (its pid file and mconsole socket)
)

// Console lines the init script prints, which run watches for.
const (
	consolePrefix   = "secondkernel: "
	innerStartLine  = consolePrefix + "running the inner tests"
	setupFailedLine = consolePrefix + "setup failed: "
)

// initScript is the guest's init for one boot: work is the outer test's
// directory, exe and dir the inner test binary and its working directory.
// Init must never exit (the kernel panics when it does), so every path of
// the script ends in off, which powers the guest down.
func initScript(opts Options, work, exe, dir string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("#!/bin/sh")
	w("# Init of a user-mode Linux guest, written by internal/secondkernel for one test and removed with")
	w("# its directory. It must not exit (that panics the kernel): every path ends in off.")
	w("PATH=%s; export PATH", strings.Join(guestPath, ":"))
	w("W=%s", shq(work))
	w(`say() { echo "%s$*"; }`, consolePrefix)
	w(`off() { sync; echo o >/proc/sysrq-trigger; sleep 3600; }`)
	w(`die() { say "setup failed: $*"; off; }`)
	// The guest's own /proc, /sys and /dev (devtmpfs: the loop devices
	// appear there, not among the host's nodes) and /run, where libmount
	// and losetup keep state that must not reach the host's.
	w(`mount -t proc proc /proc || die "mount /proc"`)
	w(`mount -t sysfs sysfs /sys || die "mount /sys"`)
	// (The Debian kernel mounts devtmpfs itself: CONFIG_DEVTMPFS_MOUNT.)
	w(`grep -q '^devtmpfs /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev || die "mount /dev"`)
	w(`mount -t tmpfs -o mode=0755 tmpfs /run || die "mount /run"`)
	// The guest kernel's release, not the host's: the modules are its.
	w(`M=/usr/lib/uml/modules/$(uname -r)/kernel`)
	for _, m := range slices.Concat(baseModules, opts.Modules) {
		w(`insmod "$M"/%s || die "insmod $M/"%s`, shq(m), shq(m))
	}
	for _, name := range opts.Filesystems {
		fs := filesystems[name]
		img, mnt := filepath.Join(work, name+".img"), filepath.Join(work, name)
		w(`say "making %s"`, name)
		w(`truncate -s %s %s || die "truncate %s"`, fs.size, shq(img), name)
		w(`dev=$(losetup --find --show %s) || die "losetup %s"`, shq(img), name)
		w(`%s "$dev" || die "%s"`, shqAll(fs.mkfs), fs.tool)
		w(`mkdir %s && mount -t %s -o prjquota "$dev" %s || die "mount %s"`, shq(mnt), name, shq(mnt), name)
	}
	w(`mkdir "$W/tmp" "$W/home" || die "mkdir tmp home"`)
	w(`cd %s || die "cd %s"`, shq(dir), shq(dir))
	// A clean environment: the inner tests see what the options say and
	// nothing of the kernel command line, which Linux hands init as env.
	env := []string{"PATH=" + strings.Join(guestPath, ":"), `HOME="$W/home"`, `TMPDIR="$W/tmp"`, envInside + "=1"}
	for _, name := range opts.Filesystems {
		env = append(env, fsEnv(name)+"="+shq(filepath.Join(work, name)))
	}
	for _, kv := range opts.Env {
		env = append(env, shq(kv))
	}
	args := []string{exe, "-test.v", "-test.run", opts.Run, "-test.count", "1",
		"-test.timeout", strconv.FormatInt(int64(opts.innerTimeout()/time.Second), 10) + "s"}
	w(`echo %s`, shq(innerStartLine))
	// tee shows the output on the console as it comes and keeps a copy
	// for Run to read; the status goes through a file because a pipeline's
	// status is tee's.
	w(`{ env -i %s %s 2>&1; echo $? >"$W/%s"; } | tee "$W/%s"`, strings.Join(env, " "), shqAll(args), statusFile, innerFile)
	w(`say "inner tests exited $(cat "$W/%s")"`, statusFile)
	w(`off`)
	return b.String()
}

// shq quotes s for sh: in single quotes, each single quote in it closed,
// escaped and reopened.
func shq(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shqAll(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shq(a)
	}
	return strings.Join(q, " ")
}
