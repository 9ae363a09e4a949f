package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

var allModes = []Mode{ModeFSConfig, ModeLegacy, ModeAuto}

// mountInfo returns the mount table entry for target.
func mountInfo(t testing.TB, target string) *mountinfo.Info {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 {
		t.Fatalf("%s: %d mount table entries, want 1", target, len(infos))
	}
	return infos[0]
}

func assertMounted(t testing.TB, target string, want bool) {
	t.Helper()
	got, err := IsMounted(target)
	if err != nil || got != want {
		t.Fatalf("IsMounted(%s) = %v, %v; want %v", target, got, err, want)
	}
}

// assertLayersOption checks how the kernel was handed the layers: as one
// relative lowerdir by mount(2), or one absolute lowerdir+ each by fsconfig.
func assertLayersOption(t testing.TB, target string, c Config, mode Mode) {
	t.Helper()
	info := mountInfo(t, target)
	if info.FSType != "overlay" || info.Source != "overlay" {
		t.Errorf("%s: fstype %q source %q, want overlay overlay", target, info.FSType, info.Source)
	}
	var want string
	switch mode {
	case ModeLegacy:
		want = "lowerdir=" + strings.Join(c.Lowers, ":")
	default: // this kernel has lowerdir+ (checked by TestProbeThisKernel)
		ls := make([]string, len(c.Lowers))
		for i, l := range c.Lowers {
			ls[i] = "lowerdir+=" + filepath.Join(c.Dir, l)
		}
		want = strings.Join(ls, ",")
	}
	if !strings.Contains(info.VFSOptions, want) {
		t.Errorf("%s: superblock options %q, want them to contain %q", target, info.VFSOptions, want)
	}
}

func kernelHasLowerdirPlus(t testing.TB) bool {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", release, err)
	}
	return major > 6 || major == 6 && minor >= 8
}

// layeredStore builds two lower layers and an upper exercising every rule
// of the merge, and returns the config and the merged view it must give.
func layeredStore(t testing.TB) (Config, map[string]string) {
	s := newStore(t)
	bottom := s.layer(func(d string) {
		for _, f := range []string{"a.txt", "b.txt", "c.txt", "gone.txt", "bottom.txt", "opq/old", "dir/keep", "upopq/old"} {
			writeFile(t, filepath.Join(d, f), "bottom")
		}
	})
	top := s.layer(func(d string) {
		writeFile(t, filepath.Join(d, "a.txt"), "top")
		writeFile(t, filepath.Join(d, "c.txt"), "top")
		whiteout(t, filepath.Join(d, "gone.txt"))
		opaque(t, filepath.Join(d, "opq"))
		writeFile(t, filepath.Join(d, "opq/new"), "top")
		writeFile(t, filepath.Join(d, "dir/x"), "top")
	})
	upper, work := s.upper(func(d string) {
		writeFile(t, filepath.Join(d, "b.txt"), "upper")
		writeFile(t, filepath.Join(d, "u.txt"), "upper")
		whiteout(t, filepath.Join(d, "c.txt"))
		opaque(t, filepath.Join(d, "upopq"))
		writeFile(t, filepath.Join(d, "upopq/new"), "upper")
	})
	c := Config{Dir: s.dir, Lowers: []string{top, bottom}, Upper: upper, Work: work}
	return c, map[string]string{
		"a.txt":      "top",    // the upper of two lowers wins
		"b.txt":      "upper",  // the upper wins over the lowers
		"bottom.txt": "bottom", // lower files show through
		"u.txt":      "upper",
		// c.txt: whited out in the upper; gone.txt: whited out in the top lower.
		"dir/":      "", // directories merge
		"dir/keep":  "bottom",
		"dir/x":     "top",
		"opq/":      "", // opaque in the top lower: bottom's opq/old hidden
		"opq/new":   "top",
		"upopq/":    "", // opaque in the upper: the lowers' upopq/old hidden
		"upopq/new": "upper",
	}
}

func TestMountMergedView(t *testing.T) {
	needRoot(t)
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			c, want := layeredStore(t)
			dst := target(t)
			if err := Mount(context.Background(), c, dst, mode); err != nil {
				t.Fatal(err)
			}
			assertMounted(t, dst, true)
			assertTree(t, dst, want)
			assertLayersOption(t, dst, c, mode)
			if info := mountInfo(t, dst); !slices.Contains(strings.Split(info.Options, ","), "rw") {
				t.Errorf("mount options %q, want rw", info.Options)
			}
		})
	}
}

func TestMountWritesLandInUpper(t *testing.T) {
	needRoot(t)
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			c, _ := layeredStore(t)
			bottom := filepath.Join(c.Dir, c.Lowers[1])
			lowerBefore := tree(t, bottom)
			dst := target(t)
			if err := Mount(context.Background(), c, dst, mode); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dst, "new.txt"), "new")
			writeFile(t, filepath.Join(dst, "bottom.txt"), "changed")
			if err := os.Remove(filepath.Join(dst, "dir/keep")); err != nil {
				t.Fatal(err)
			}

			upper := filepath.Join(c.Dir, c.Upper)
			if got := readFile(t, filepath.Join(upper, "new.txt")); got != "new" {
				t.Errorf("upper new.txt = %q, want %q", got, "new")
			}
			if got := readFile(t, filepath.Join(upper, "bottom.txt")); got != "changed" {
				t.Errorf("upper bottom.txt = %q, want the copied-up %q", got, "changed")
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(upper, "dir/keep"), &st); err != nil {
				t.Fatalf("no whiteout for the removed dir/keep in the upper: %v", err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
				t.Errorf("upper dir/keep: mode %#o rdev %d, want a 0/0 character device", st.Mode, st.Rdev)
			}
			assertTree(t, bottom, lowerBefore)
		})
	}
}

func TestMountReadOnly(t *testing.T) {
	needRoot(t)
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			c, _ := layeredStore(t)
			c.Upper, c.Work = "", ""
			dst := target(t)
			if err := Mount(context.Background(), c, dst, mode); err != nil {
				t.Fatal(err)
			}
			assertTree(t, dst, map[string]string{
				"a.txt": "top", "b.txt": "bottom", "c.txt": "top", "bottom.txt": "bottom",
				"dir/": "", "dir/keep": "bottom", "dir/x": "top",
				"opq/": "", "opq/new": "top",
				"upopq/": "", "upopq/old": "bottom",
			})
			err := os.WriteFile(filepath.Join(dst, "new.txt"), nil, 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Errorf("creating a file = %v, want EROFS", err)
			}
			info := mountInfo(t, dst)
			if !slices.Contains(strings.Split(info.Options, ","), "ro") {
				t.Errorf("mount options %q, want ro", info.Options)
			}
			assertLayersOption(t, dst, c, mode)
		})
	}
}

func TestMountReadOnlySingleLowerIsBind(t *testing.T) {
	needRoot(t)
	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			s := newStore(t)
			l := s.layer(func(d string) { writeFile(t, filepath.Join(d, "f"), "layer") })
			dst := target(t)
			if err := Mount(context.Background(), Config{Dir: s.dir, Lowers: []string{l}}, dst, mode); err != nil {
				t.Fatal(err)
			}
			assertTree(t, dst, map[string]string{"f": "layer"})
			if err := os.WriteFile(filepath.Join(dst, "f"), nil, 0o644); !errors.Is(err, unix.EROFS) {
				t.Errorf("writing through the bind mount = %v, want EROFS", err)
			}

			info := mountInfo(t, dst)
			if info.FSType == "overlay" {
				t.Errorf("fstype overlay, want a bind mount of the layer's filesystem")
			}
			diff, err := filepath.EvalSymlinks(filepath.Join(s.dir, l))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(diff, info.Root) || !strings.HasSuffix(info.Root, "/diff") {
				t.Errorf("bind mount root %q, want the layer's diff %q", info.Root, diff)
			}
			if !slices.Contains(strings.Split(info.Options, ","), "ro") {
				t.Errorf("mount options %q, want ro", info.Options)
			}
			// Only the bind mount is read-only; the store stays writable.
			writeFile(t, filepath.Join(diff, "g"), "store")
			if got := readFile(t, filepath.Join(dst, "g")); got != "store" {
				t.Errorf("g through the bind mount = %q, want %q", got, "store")
			}
		})
	}
}

func TestMountMaxLowers(t *testing.T) {
	needRoot(t)
	if !kernelHasLowerdirPlus(t) {
		t.Skip("kernel lacks lowerdir+: 500 layers cannot be mounted")
	}
	s := newStore(t)
	ls := s.numbered(MaxLowers)
	upper, work := s.upper(nil)
	want := map[string]string{"top": "0"} // order respected: the first lower wins
	for i := range MaxLowers {
		want[fmt.Sprintf("layer%d", i)] = strconv.Itoa(i)
	}
	for _, ro := range []bool{false, true} {
		for _, mode := range []Mode{ModeFSConfig, ModeAuto} {
			t.Run(fmt.Sprintf("%s/readonly=%v", mode, ro), func(t *testing.T) {
				c := Config{Dir: s.dir, Lowers: ls, Upper: upper, Work: work}
				if ro {
					c.Upper, c.Work = "", ""
				}
				dst := target(t)
				if err := Mount(context.Background(), c, dst, mode); err != nil {
					t.Fatal(err)
				}
				assertTree(t, dst, want)
				assertLayersOption(t, dst, c, mode)
			})
		}
	}
	t.Run("legacy", func(t *testing.T) {
		dst := target(t)
		err := Mount(context.Background(), Config{Dir: s.dir, Lowers: ls, Upper: upper, Work: work}, dst, ModeLegacy)
		if !errors.Is(err, ErrDataTooLong) || !strings.Contains(err.Error(), "500 lower layers need") {
			t.Fatalf("legacy Mount of 500 layers = %v, want ErrDataTooLong naming 500 layers", err)
		}
		assertMounted(t, dst, false)
	})
}

func TestMountTooManyLowers(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	c := Config{Dir: s.dir, Lowers: lowers(MaxLowers + 1)}
	for _, mode := range allModes {
		dst := target(t)
		err := Mount(context.Background(), c, dst, mode)
		if !errors.Is(err, ErrTooManyLowers) || !strings.Contains(err.Error(), "501 lower layers, the kernel allows at most 500") {
			t.Errorf("%s: Mount of 501 layers = %v, want ErrTooManyLowers naming 501 and 500", mode, err)
		}
		assertMounted(t, dst, false)
	}
}

// TestLegacyLargestCount mounts the most Docker-style layers mount(2) data
// can carry, and checks that one more is refused with an explanation.
func TestLegacyLargestCount(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	ls := s.numbered(200)
	upper, work := s.upper(nil)
	config := func(n int) Config { return Config{Dir: s.dir, Lowers: ls[:n], Upper: upper, Work: work} }
	n := 0
	for n < len(ls) {
		if _, err := LegacyData(config(n + 1)); err != nil {
			break
		}
		n++
	}
	if n < 100 || n == len(ls) {
		t.Fatalf("largest legacy layer count %d, want between 100 and %d for a %d-byte page", n, len(ls)-1, os.Getpagesize())
	}
	t.Logf("mount(2) data fits %d layers", n)

	dst := target(t)
	if err := Mount(context.Background(), config(n), dst, ModeLegacy); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"top": "0"}
	for i := range n {
		want[fmt.Sprintf("layer%d", i)] = strconv.Itoa(i)
	}
	assertTree(t, dst, want)
	assertLayersOption(t, dst, config(n), ModeLegacy)

	over := target(t)
	err := Mount(context.Background(), config(n+1), over, ModeLegacy)
	wantMsg := fmt.Sprintf("%d lower layers need", n+1)
	pageMsg := fmt.Sprintf("over the page size %d", os.Getpagesize())
	if !errors.Is(err, ErrDataTooLong) || !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), pageMsg) {
		t.Fatalf("legacy Mount of %d layers = %v, want ErrDataTooLong containing %q and %q", n+1, err, wantMsg, pageMsg)
	}
	assertMounted(t, over, false)

	if kernelHasLowerdirPlus(t) {
		if err := Mount(context.Background(), config(n+1), over, ModeAuto); err != nil {
			t.Fatalf("auto Mount of %d layers: %v", n+1, err)
		}
	}
}

// TestLegacyExactPage checks the boundary against the kernel itself: data of
// exactly page size - 1 bytes mounts with every layer intact, and one byte
// more (which the kernel would silently truncate) is refused.
func TestLegacyExactPage(t *testing.T) {
	needRoot(t)
	page := os.Getpagesize()
	s := newStore(t)
	// Read-only data is "lowerdir=" + k*29 - 1 + ":l/" + name + ",index=off".
	k := (page - 1 - len("lowerdir=,index=off:l/") - 1) / 29
	ls := s.numbered(k)
	nameLen := page - 1 - (len("lowerdir=,index=off:l/") + 29*k - 1)
	long, _ := s.ids()
	name := strings.Repeat("B", nameLen)
	last := s.layerNamed(long, name, func(d string) { writeFile(t, filepath.Join(d, "bottom"), "bottom") })
	c := Config{Dir: s.dir, Lowers: append(slices.Clone(ls), last)}

	data, err := LegacyData(c)
	if err != nil || len(data) != page-1 {
		t.Fatalf("LegacyData() = %d bytes, %v; want %d bytes", len(data), err, page-1)
	}
	dst := target(t)
	if err := Mount(context.Background(), c, dst, ModeLegacy); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dst, "bottom")); got != "bottom" {
		t.Errorf("bottom = %q, want %q", got, "bottom")
	}
	if got := readFile(t, filepath.Join(dst, "top")); got != "0" {
		t.Errorf("top = %q, want %q", got, "0")
	}

	longer := filepath.Join("l", name+"B")
	if err := os.Symlink(filepath.Join("..", long, "diff"), filepath.Join(s.dir, longer)); err != nil {
		t.Fatal(err)
	}
	c.Lowers[len(c.Lowers)-1] = longer
	over := target(t)
	err = Mount(context.Background(), c, over, ModeLegacy)
	if !errors.Is(err, ErrDataTooLong) || !strings.Contains(err.Error(), fmt.Sprintf("need %d bytes of mount data, 1 over", page)) {
		t.Fatalf("legacy Mount with %d bytes of data = %v, want ErrDataTooLong, 1 over", page, err)
	}
	assertMounted(t, over, false)
}

func TestMountErrors(t *testing.T) {
	needRoot(t)
	s := newStore(t)
	ls := s.numbered(2)
	missing := filepath.Join("l", "MISSINGMISSINGMISSINGMISSI")
	if err := os.Symlink("../nothing/diff", filepath.Join(s.dir, missing)); err != nil {
		t.Fatal(err)
	}
	upper, work := s.upper(nil)

	for _, mode := range allModes {
		t.Run(mode.String(), func(t *testing.T) {
			dst := target(t)
			c := Config{Dir: s.dir, Lowers: []string{ls[0], missing}, Upper: upper, Work: work}
			err := Mount(context.Background(), c, dst, mode)
			if !errors.Is(err, unix.ENOENT) {
				t.Errorf("Mount with a dangling lower = %v, want ENOENT", err)
			}
			if err == nil || !strings.Contains(err.Error(), filepath.Join(s.dir, missing)) {
				t.Errorf("Mount with a dangling lower = %v, want it to name the lower", err)
			}
			assertMounted(t, dst, false)

			c = Config{Dir: s.dir, Lowers: ls, Upper: upper, Work: work}
			err = Mount(context.Background(), c, filepath.Join(dst, "nonexistent"), mode)
			if !errors.Is(err, unix.ENOENT) {
				t.Errorf("Mount on a missing target = %v, want ENOENT", err)
			}
			// Single-lower read-only binds go their own way.
			err = Mount(context.Background(), Config{Dir: s.dir, Lowers: []string{missing}}, dst, mode)
			if !errors.Is(err, unix.ENOENT) {
				t.Errorf("bind Mount of a dangling lower = %v, want ENOENT", err)
			}
			assertMounted(t, dst, false)

			err = Mount(context.Background(), c, "merged", mode)
			if err == nil || !strings.Contains(err.Error(), `target "merged" is not an absolute path`) {
				t.Errorf("Mount on a relative target = %v, want an error saying so", err)
			}

			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := Mount(ctx, c, dst, mode); !errors.Is(err, context.Canceled) {
				t.Errorf("Mount with a canceled context = %v, want context.Canceled", err)
			}
			assertMounted(t, dst, false)
		})
	}
	dst := target(t)
	err := Mount(context.Background(), Config{Dir: s.dir, Lowers: ls}, dst, Mode(9))
	if err == nil || !strings.Contains(err.Error(), "unknown mode Mode(9)") {
		t.Errorf("Mount with Mode(9) = %v, want an unknown mode error", err)
	}
	assertMounted(t, dst, false)
}

func TestFSConfigErrorCarriesKernelLog(t *testing.T) {
	needRoot(t)
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = unix.FsconfigSetString(fd, "no_such_option", "x")
	err = fsconfigError(fd, "fsconfig no_such_option=x", err)
	if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "kernel: e overlay: Unknown parameter 'no_such_option'") {
		t.Errorf("fsconfigError() = %v, want EINVAL with the kernel's log line", err)
	}
	if log := fsLog(fd); len(log) != 0 {
		t.Errorf("log after fsconfigError: %q, want it drained", log)
	}
}

func TestProbeThisKernel(t *testing.T) {
	needRoot(t)
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	probeErr := unix.FsconfigSetFlag(fd, "lowerdir+")
	log := fsLog(fd)
	if got, want := lowerdirPlusFromProbe(probeErr, log), kernelHasLowerdirPlus(t); got != want {
		t.Errorf("probe says lowerdir+ %v (error %v, log %q); kernel release says %v", got, probeErr, log, want)
	}
}

func TestLegacyKeepsWorkingDirectory(t *testing.T) {
	needRoot(t)
	before, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	c, _ := layeredStore(t)
	for range 10 {
		dst := target(t)
		if err := Mount(context.Background(), c, dst, ModeLegacy); err != nil {
			t.Fatal(err)
		}
		if err := Unmount(context.Background(), dst); err != nil {
			t.Fatal(err)
		}
	}
	if after, err := os.Getwd(); err != nil || after != before {
		t.Errorf("working directory %q (%v) after legacy mounts, want %q", after, err, before)
	}
}

func TestUnmount(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := newStore(t)
	ls := s.numbered(2)
	c := Config{Dir: s.dir, Lowers: ls}
	dst := target(t)

	if err := Unmount(ctx, dst); err != nil {
		t.Errorf("Unmount of a plain directory = %v, want nil", err)
	}
	if err := Unmount(ctx, filepath.Join(dst, "nonexistent")); err != nil {
		t.Errorf("Unmount of a missing path = %v, want nil", err)
	}
	if ok, err := IsMounted(filepath.Join(dst, "nonexistent")); ok || err != nil {
		t.Errorf("IsMounted of a missing path = %v, %v; want false, nil", ok, err)
	}

	// Of a stack of two mounts, one call takes only the top one: the
	// mount below may be another program's.
	for _, mode := range []Mode{ModeLegacy, ModeFSConfig} {
		if err := Mount(ctx, c, dst, mode); err != nil {
			t.Fatal(err)
		}
	}
	assertMounted(t, dst, true)
	at := func(mp string) mountinfo.FilterFunc {
		return func(i *mountinfo.Info) (skip, stop bool) { return i.Mountpoint != mp, false }
	}
	below, err := mountinfo.GetMounts(at(dst))
	if err != nil || len(below) != 2 {
		t.Fatalf("mount table lists %d mounts at %s, want 2 (%v)", len(below), dst, err)
	}
	if err := Unmount(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if left, _ := mountinfo.GetMounts(at(dst)); len(left) != 1 {
		t.Fatalf("after one Unmount %d mounts at %s, want the lower one", len(left), dst)
	}
	if err := Unmount(ctx, dst); err != nil {
		t.Fatal(err)
	}
	assertMounted(t, dst, false)
	if infos, _ := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dst)); len(infos) != 0 {
		t.Errorf("mount table still lists %s after Unmount", dst)
	}
	if err := Unmount(ctx, dst); err != nil {
		t.Errorf("second Unmount = %v, want nil", err)
	}

	// A busy mount stays, and says why.
	if err := Mount(ctx, c, dst, ModeAuto); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dst, "top"))
	if err != nil {
		t.Fatal(err)
	}
	err = Unmount(ctx, dst)
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), dst) {
		t.Errorf("Unmount with an open file = %v, want EBUSY naming %s", err, dst)
	}
	assertMounted(t, dst, true)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Unmount(ctx, dst); err != nil {
		t.Fatal(err)
	}
	assertMounted(t, dst, false)
}

// Bind makes writable and read-only binds in every mode; a read-only one
// refuses writes.
func TestBind(t *testing.T) {
	needRoot(t)
	for _, mode := range allModes {
		for _, readOnly := range []bool{false, true} {
			src, target := t.TempDir(), t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "f"), []byte("src"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := Bind(src, target, BindOptions{Flags: Flags{ReadOnly: readOnly}, Mode: mode}); err != nil {
				t.Fatalf("mode %s, readOnly %t: %v", mode, readOnly, err)
			}
			got, err := os.ReadFile(filepath.Join(target, "f"))
			if err != nil || string(got) != "src" {
				t.Errorf("mode %s: read through the bind: %q, %v", mode, got, err)
			}
			err = os.WriteFile(filepath.Join(target, "w"), nil, 0o644)
			switch {
			case readOnly && !errors.Is(err, unix.EROFS):
				t.Errorf("mode %s: write to a read-only bind: %v, want EROFS", mode, err)
			case !readOnly && err != nil:
				t.Errorf("mode %s: write to a writable bind: %v", mode, err)
			}
			if err := Unmount(context.Background(), target); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := Bind("relative", t.TempDir(), BindOptions{}); err == nil {
		t.Error("Bind took a relative source")
	}
}

// Resolve settles ModeAuto once into what this kernel has.
func TestResolve(t *testing.T) {
	needRoot(t)
	want := ModeLegacy
	if kernelHasLowerdirPlus(t) {
		want = ModeFSConfig
	}
	if got, err := Resolve(ModeAuto); err != nil || got != want {
		t.Errorf("Resolve(auto) = %s, %v; want %s", got, err, want)
	}
	if got, err := Resolve(ModeLegacy); err != nil || got != ModeLegacy {
		t.Errorf("Resolve(legacy) = %s, %v", got, err)
	}
	got, err := Resolve(ModeFSConfig)
	if want == ModeFSConfig && (err != nil || got != ModeFSConfig) {
		t.Errorf("Resolve(fsconfig) = %s, %v", got, err)
	}
	if want == ModeLegacy && !errors.Is(err, ErrNoLowerdirPlus) {
		t.Errorf("Resolve(fsconfig) on a kernel without lowerdir+ = %s, %v", got, err)
	}
}

// A target whose path holds a symlink is refused by Mount, Bind and
// Unmount: the volume would land, or be looked for, where the link points.
func TestSymlinkTarget(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := newStore(t)
	c := Config{Dir: s.dir, Lowers: s.numbered(2)}
	real := t.TempDir()
	if err := os.Mkdir(filepath.Join(real, "mnt"), 0o755); err != nil {
		t.Fatal(err)
	}
	linkDir := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, linkDir); err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{linkDir, filepath.Join(linkDir, "mnt")} {
		for _, mode := range allModes {
			if err := Mount(ctx, c, target, mode); !errors.Is(err, ErrSymlinkInTarget) {
				t.Errorf("Mount at %s (mode %s) = %v, want ErrSymlinkInTarget", target, mode, err)
			}
		}
		if err := Bind(real, target, BindOptions{}); !errors.Is(err, ErrSymlinkInTarget) {
			t.Errorf("Bind at %s = %v, want ErrSymlinkInTarget", target, err)
		}
		if err := Unmount(ctx, target); !errors.Is(err, ErrSymlinkInTarget) {
			t.Errorf("Unmount at %s = %v, want ErrSymlinkInTarget", target, err)
		}
	}
	if m, _ := mountinfo.GetMounts(mountinfo.SingleEntryFilter(filepath.Join(real, "mnt"))); len(m) != 0 {
		t.Errorf("a mount landed behind the symlink: %v", m)
	}
}

// MountDev tells a mount from one made over it.
func TestMountDev(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := newStore(t)
	c, dst := Config{Dir: s.dir, Lowers: s.numbered(2)}, target(t)
	before, err := MountDev(dst)
	if err != nil {
		t.Fatal(err)
	}
	if err := Mount(ctx, c, dst, ModeAuto); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Unmount(ctx, dst) })
	first, err := MountDev(dst)
	if err != nil || first == 0 || first == before {
		t.Fatalf("MountDev after a mount = %d, %v; before it %d", first, err, before)
	}
	if err := Bind(t.TempDir(), dst, BindOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Unmount(ctx, dst) })
	if over, _ := MountDev(dst); over == first {
		t.Errorf("a mount over the first has its device %d", first)
	}
}

// Flags reach the mount table in every mode, for overlays and binds.
func TestMountFlags(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	flags := Flags{NoSuid: true, NoDev: true, NoExec: true, Atime: AtimeNone}
	want := []string{"nosuid", "nodev", "noexec", "noatime"}
	check := func(what, dst string) {
		t.Helper()
		info := mountInfo(t, dst)
		for _, w := range want {
			if !slices.Contains(strings.Split(info.Options, ","), w) {
				t.Errorf("%s: mount options %q lack %s", what, info.Options, w)
			}
		}
	}
	for _, mode := range []Mode{ModeFSConfig, ModeLegacy} {
		s := newStore(t)
		for _, n := range []int{1, 2} {
			c := Config{Dir: s.dir, Lowers: s.numbered(n), Flags: flags}
			dst := target(t)
			if err := Mount(ctx, c, dst, mode); err != nil {
				t.Fatalf("mode %s, %d lowers: %v", mode, n, err)
			}
			check(fmt.Sprintf("mode %s, %d lowers", mode, n), dst)
			if err := Unmount(ctx, dst); err != nil {
				t.Fatal(err)
			}
		}
		dst := target(t)
		if err := Bind(t.TempDir(), dst, BindOptions{Flags: flags, Mode: mode}); err != nil {
			t.Fatal(err)
		}
		check("bind, mode "+mode.String(), dst)
		if err := Unmount(ctx, dst); err != nil {
			t.Fatal(err)
		}
	}
}
