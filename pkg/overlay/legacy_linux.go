package overlay

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"golang.org/x/sys/unix"
)

// mountLegacy mounts c at target with mount(2). The data names layers by
// paths relative to c.Dir, as Docker's overlay2 does, to fit as many as
// possible in the one page mount(2) copies; the kernel resolves them
// against the working directory of the calling thread.
func mountLegacy(c Config, t *mountTarget) error {
	data, err := LegacyData(c)
	if err != nil {
		return err
	}
	f := c.Flags
	f.ReadOnly = f.ReadOnly || c.readOnly()
	flags := f.ms()
	err = inDir(c.Dir, func() error {
		return unix.Mount("overlay", t.proc(), "overlay", flags, data)
	})
	if err == nil {
		return nil
	}
	err = fmt.Errorf("mount(2) overlay with %d lowers (%d bytes of data): %w", len(c.Lowers), len(data), err)
	// mount(2) cannot say which path it failed on; find it for the caller.
	if p := firstMissing(c); p != "" {
		return fmt.Errorf("%w: %s does not resolve", err, p)
	}
	return fmt.Errorf("%w (overlayfs logs its reason to dmesg)", err)
}

// firstMissing returns the first of c's paths that does not resolve, or "".
func firstMissing(c Config) string {
	for _, p := range append(slices.Clip(c.Lowers), c.Upper, c.Work) {
		if p == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.Dir, p)); err != nil {
			return filepath.Join(c.Dir, p)
		}
	}
	return ""
}

// inDir runs fn on an OS thread of its own whose working directory is dir,
// leaving every other thread's working directory alone.
func inDir(dir string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: a goroutine that exits while locked takes its
		// thread with it, so the changed working directory dies here
		// instead of surfacing under some other goroutine.
		runtime.LockOSThread()
		// Go's threads share one fs_struct; without unsharing it the
		// chdir below would move the whole process.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", dir, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
