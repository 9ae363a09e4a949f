package secondkernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// panicGrace is how long a guest that printed a kernel panic gets to exit
// by itself before it is killed: user-mode Linux halts on panic, so this
// is only for one that would hang.
const panicGrace = 5 * time.Second

// consoleTail is how many console lines an error quotes.
const consoleTail = 60

// run is Run without the testing.T: it returns what went wrong, so that
// the harness's own tests can check its failures too.
func run(ctx context.Context, opts Options, work string, logf func(string, ...any)) (result, error) {
	var res result
	if Inside() {
		return res, errors.New("secondkernel: Run inside the second kernel: guests do not nest")
	}
	if err := opts.validate(); err != nil {
		return res, err
	}
	linux, err := checkTools(opts)
	if err != nil {
		return res, err
	}
	exe, err := os.Executable()
	if err != nil {
		return res, fmt.Errorf("secondkernel: the test binary: %w", err)
	}
	dir, err := os.Getwd()
	if err != nil {
		return res, fmt.Errorf("secondkernel: %w", err)
	}
	script := filepath.Join(work, initFile)
	if err := os.WriteFile(script, []byte(initScript(opts, work, exe, dir)), 0o755); err != nil {
		return res, fmt.Errorf("secondkernel: %w", err)
	}
	if err := os.Mkdir(filepath.Join(work, umlDirName), 0o700); err != nil {
		return res, fmt.Errorf("secondkernel: %w", err)
	}
	args := []string{
		"mem=512M",
		// The host's / as the guest's root, read-write: the guest runs the
		// host's binaries, the test binary among them.
		"rootfstype=hostfs", "rootflags=/", "rw",
		"init=" + script,
		// Console 0 writes to stdout and reads nothing; no other consoles
		// or serial lines, which would open ptys or xterms.
		"con0=null,fd:1", "con=null", "ssl=null",
		// Its pid file and mconsole socket under work, not ~/.uml.
		"umid=secondkernel", "uml_dir=" + filepath.Join(work, umlDirName),
		"quiet",
	}

	ctx, cancel := context.WithTimeout(ctx, opts.timeout())
	defer cancel()
	g := boot(ctx, linux, args, logf)
	res.elapsed, res.setup = g.elapsed, g.setup

	var problems []string
	if g.err != nil {
		problems = append(problems, g.err.Error())
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		problems = append(problems, fmt.Sprintf("the guest did not end within %s and was killed", opts.timeout()))
	}
	if g.panicked != "" {
		problems = append(problems, "the guest kernel panicked: "+g.panicked)
	}
	if g.setupFailed != "" {
		problems = append(problems, "the guest's setup failed: "+g.setupFailed)
	}
	inner, innerErr := os.ReadFile(filepath.Join(work, innerFile))
	status, statusErr := readStatus(filepath.Join(work, statusFile))
	switch {
	case statusErr != nil:
		problems = append(problems, "no inner exit status: "+statusErr.Error())
	case status != 0:
		problems = append(problems, fmt.Sprintf("the inner tests exited %d", status))
	}
	if innerErr == nil {
		for _, name := range opts.Want {
			if !passed(inner, name) {
				problems = append(problems, fmt.Sprintf("inner test %s did not report PASS (it failed, skipped or did not run: -test.run %q)", name, opts.Run))
			}
		}
	} else if len(opts.Want) > 0 {
		problems = append(problems, "no inner output: "+innerErr.Error())
	}
	if len(problems) == 0 {
		return res, nil
	}
	msg := "second kernel: " + strings.Join(problems, "; ")
	if innerErr == nil && len(inner) > 0 {
		msg += "\n--- inner output:\n" + string(inner)
	} else {
		msg += "\n--- last console lines:\n" + strings.Join(g.tail, "\n")
	}
	return res, errors.New(msg)
}

// checkTools finds linux and the programs the init script runs (the
// guest runs the host's), and the modules, naming the Debian package of
// whatever is missing. It returns the path of linux.
func checkTools(opts Options) (string, error) {
	type tool struct{ name, pkg string }
	tools := []tool{{"linux", "user-mode-linux"}, {"insmod", "kmod"}, {"losetup", "mount"}, {"mount", "mount"},
		{"setpriv", "util-linux"}, {"truncate", "coreutils"}, {"tee", "coreutils"}, {"env", "coreutils"},
		{"sync", "coreutils"}, {"sh", "dash"}}
	for _, name := range opts.Filesystems {
		fs := filesystems[name]
		tools = append(tools, tool{fs.tool, fs.pkg})
	}
	var missing []string
	paths := map[string]string{}
	for _, tl := range tools {
		p, ok := lookGuestPath(tl.name)
		if !ok {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tl.name, tl.pkg))
		}
		paths[tl.name] = p
	}
	// The guest kernel's release is not known before it boots; its
	// modules are the one directory of the package.
	for _, m := range append(baseModules[:len(baseModules):len(baseModules)], opts.Modules...) {
		found, _ := filepath.Glob(filepath.Join("/usr/lib/uml/modules/*/kernel", m))
		if len(found) == 0 {
			missing = append(missing, fmt.Sprintf("module %s under /usr/lib/uml/modules/*/kernel (Debian package user-mode-linux)", m))
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("secondkernel: missing %s: run `bash hack/test-packages.sh` as root to install the test packages", strings.Join(missing, ", "))
	}
	return paths["linux"], nil
}

func lookGuestPath(name string) (string, bool) {
	for _, d := range guestPath {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// readStatus reads the inner exit status the init script wrote.
func readStatus(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("the guest ended before the inner tests did: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// passed reports whether go test -v output says test name passed; a
// subtest's name has its parents', "TestA/b".
func passed(out []byte, name string) bool {
	re := regexp.MustCompile(`(?m)^\s*--- PASS: ` + regexp.QuoteMeta(name) + ` \(`)
	return re.Match(out)
}

// guest is what one boot left.
type guest struct {
	err         error    // starting, waiting or cleaning up
	panicked    string   // the kernel's panic line, if it printed one
	setupFailed string   // the init script's reason, if its setup failed
	tail        []string // the last console lines
	// elapsed is the whole boot; setup is until the inner tests started
	// (or elapsed, if they never did).
	elapsed, setup time.Duration
}

// boot runs linux with args until it exits, ctx ends (then it is killed)
// or it panics and does not exit within panicGrace, logging its console.
// When boot returns, no process of the guest is left.
func boot(ctx context.Context, linux string, args []string, logf func(string, ...any)) guest {
	var g guest
	t0 := time.Now()
	r, w, err := os.Pipe()
	if err != nil {
		g.err = err
		return g
	}
	cmd := exec.Command(linux, args...)
	cmd.Stdin = nil // /dev/null: console 0 reads nothing anyway
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = guestEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// One process group holds linux and every host process it makes
		// for guest address spaces, so that one kill ends them all.
		Setpgid: true,
		// Should this test binary die, the kernel kills the guest.
		Pdeathsig: syscall.SIGKILL,
	}

	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child exits,
		// not the process: keep this goroutine on its thread until the
		// guest is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		_ = r.Close() // a pipe nothing was written to
		_ = w.Close()
		g.err = fmt.Errorf("start %s: %w", linux, err)
		return g
	}
	_ = w.Close() // the guest holds the write end now; EOF when all its processes are gone
	pgid := cmd.Process.Pid

	lines := make(chan string, 256)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer close(lines)
		readConsole(r, lines)
	}()

	var panicTimer <-chan time.Time
	innerStarted := time.Time{}
	var waitErr error
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}
loop:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				continue
			}
			logf("guest: %s", line)
			g.tail = append(g.tail, line)
			if len(g.tail) > consoleTail {
				g.tail = g.tail[1:]
			}
			switch {
			case strings.HasPrefix(line, innerStartLine) && innerStarted.IsZero():
				innerStarted = time.Now()
			case strings.HasPrefix(line, setupFailedLine):
				g.setupFailed = strings.TrimPrefix(line, setupFailedLine)
			case strings.Contains(line, "Kernel panic") && g.panicked == "":
				g.panicked = line
				panicTimer = time.After(panicGrace)
			}
		case waitErr = <-exited:
			break loop
		case <-ctx.Done():
			kill()
		case <-panicTimer:
			kill()
		}
	}
	g.elapsed = time.Since(t0)
	g.setup = g.elapsed
	if !innerStarted.IsZero() {
		g.setup = innerStarted.Sub(t0)
	}
	// linux is gone; its helpers may not be, if it died by a signal.
	if err := reapGroup(pgid); err != nil {
		g.err = err
	}
	// Drain the console: the last helper's death closed the last write
	// end, unless something outside the group inherited one; do not wait
	// for that one.
	drainTimeout := time.After(5 * time.Second)
drain:
	for lines != nil {
		select {
		case line, ok := <-lines:
			if !ok {
				lines = nil
				break drain
			}
			logf("guest: %s", line)
			g.tail = append(g.tail, line)
		case <-drainTimeout:
			break drain
		}
	}
	_ = r.Close() // the read end: ends readConsole if it still waits
	if lines != nil {
		for range lines { // what readConsole had read before the close
		}
	}
	<-readDone
	if len(g.tail) > consoleTail {
		g.tail = g.tail[len(g.tail)-consoleTail:]
	}
	if waitErr != nil && !killed && g.err == nil {
		g.err = fmt.Errorf("%s: %w", linux, waitErr)
	}
	return g
}

// readConsole sends the console's lines, without the carriage returns a
// tty-minded console writes.
func readConsole(r io.Reader, lines chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines <- strings.TrimRight(sc.Text(), "\r")
	}
}

// guestEnv is linux's environment: the host's, less TMPDIR and friends,
// which would move its memory file (an unlinked file the size of mem=)
// from /dev/shm to a disk.
func guestEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "TMPDIR", "TMP", "TEMP":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// reapGroup kills what is left of process group pgid and waits, up to a
// few seconds, until none of it is left. A guest's host processes are
// linux's children; once it has been reaped they are reparented, and init
// reaps them once they die.
func reapGroup(pgid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left, err := groupMembers(pgid)
		if err != nil {
			return fmt.Errorf("secondkernel: listing the guest's processes: %w", err)
		}
		if len(left) == 0 {
			return nil
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if time.Now().After(deadline) {
			return fmt.Errorf("secondkernel: processes %v of the guest (process group %d) outlived SIGKILL", left, pgid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// groupMembers lists the live processes of group pgid, from /proc/PID/stat
// (field 5 is the process group); zombies count as gone: they hold
// nothing but their pid, and only their parent can reap them.
func groupMembers(pgid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// comm, field 2, is in parentheses and may hold anything: split
		// after its last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state, ppid, pgrp, ...
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, err := strconv.Atoi(f[2]); err == nil && g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
