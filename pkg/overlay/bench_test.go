package overlay

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/rawmount"
)

// BenchmarkMount measures Mount+Unmount of a volume with an upper against
// the bare syscalls of the same mount made inline (the baseline), and
// reports the ratio as x-raw. The two alternate within each iteration so
// that drift in the filesystem's state (the unmount syncs the upper) falls
// on both alike. The store is on tmpfs so that the disk's syncs on unmount
// do not drown what is measured.
func BenchmarkMount(b *testing.B) {
	needRoot(b)
	s := newStoreIn(b, tmpfs(b))
	all := s.numbered(MaxLowers)
	upper, work := s.upper(nil)
	for _, n := range []int{1, 10, 100, 500} {
		c := Config{Dir: s.dir, Lowers: all[:n], Upper: upper, Work: work}
		for _, mode := range []Mode{ModeFSConfig, ModeLegacy} {
			b.Run(fmt.Sprintf("layers=%d/%s", n, mode), func(b *testing.B) {
				if _, err := LegacyData(c); mode == ModeLegacy && err != nil {
					b.Skipf("legacy mode cannot mount %d layers: %v", n, err)
				}
				dst := target(b)
				raw := rawFSConfig(c, dst)
				if mode == ModeLegacy {
					raw = rawLegacy(b, c, dst)
				}
				ctx := context.Background()
				var base time.Duration
				for b.Loop() {
					if err := Mount(ctx, c, dst, mode); err != nil {
						b.Fatal(err)
					}
					if err := Unmount(ctx, dst); err != nil {
						b.Fatal(err)
					}

					b.StopTimer()
					start := time.Now()
					if err := raw(); err != nil {
						b.Fatal(err)
					}
					base += time.Since(start)
					b.StartTimer()
				}
				b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "raw-ns/op")
				b.ReportMetric(float64(b.Elapsed())/float64(base), "x-raw")
			})
		}
	}
}

// rawFSConfig returns a function that mounts c at target and unmounts it
// again with nothing but fsopen/fsconfig/fsmount/move_mount/umount2.
func rawFSConfig(c Config, target string) func() error {
	return func() error {
		if err := rawmount.FSConfig(c.Dir, c.Lowers, c.Upper, c.Work, target); err != nil {
			return err
		}
		return unix.Unmount(target, 0)
	}
}

// rawLegacy returns a function that mounts c at target with mount(2) and
// unmounts it again. It moves the benchmark's own thread into c.Dir, once,
// so the mount is made inline rather than handed to another thread.
func rawLegacy(b *testing.B, c Config, target string) func() error {
	data, err := LegacyData(c)
	if err != nil {
		b.Fatal(err)
	}
	// Never unlocked: the benchmark's goroutine ends when it returns and
	// the runtime retires the thread, changed working directory and all.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		b.Fatal(err)
	}
	if err := unix.Chdir(c.Dir); err != nil {
		b.Fatal(err)
	}
	return func() error {
		if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
			return err
		}
		return unix.Unmount(target, 0)
	}
}

// tmpfs mounts a tmpfs for the rest of the benchmark and returns its path.
func tmpfs(b *testing.B) string {
	dir := b.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// Detach: threads that chdir'd into the store for legacy mounts
		// may not have finished exiting yet.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			b.Errorf("cleanup: %v", err)
		}
	})
	return dir
}
