//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// packEntry is what a test reads back of one packed entry.
type packEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	size     int64
	link     string
	body     string
	mtime    time.Time
	xattrs   map[string]string
	devmajor int64
	devminor int64
}

func readPacked(t testing.TB, data []byte) []packEntry {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(data))
	var out []packEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("packed stream: %v", err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		e := packEntry{name: hdr.Name, typ: hdr.Typeflag, mode: hdr.Mode, uid: hdr.Uid, gid: hdr.Gid, size: hdr.Size,
			link: hdr.Linkname, body: string(body), mtime: hdr.ModTime, devmajor: hdr.Devmajor, devminor: hdr.Devminor}
		for k, v := range hdr.PAXRecords {
			if x, ok := strings.CutPrefix(k, paxSchilyXattr); ok {
				if e.xattrs == nil {
					e.xattrs = map[string]string{}
				}
				e.xattrs[x] = v
			}
		}
		out = append(out, e)
	}
}

func pack(t testing.TB, dir string, opts PackOptions) ([]byte, PackStats) {
	t.Helper()
	var b bytes.Buffer
	st, err := Pack(context.Background(), dir, &b, opts)
	if err != nil {
		t.Fatalf("Pack %s: %v", dir, err)
	}
	return b.Bytes(), st
}

// upperTar is a layer with everything an upper can hold, in OCI form.
// Applied, it is the upper a pod would have left: whiteouts as 0/0
// devices, an opaque directory by xattr, hardlinks, a symlink, xattrs, a
// private directory of another owner, special mode bits.
func upperTar(t testing.TB) []byte {
	return buildTar(t,
		ent{name: "./", typ: tar.TypeDir, mode: 0o755},
		ent{name: "bin/", typ: tar.TypeDir},
		ent{name: "bin/tool", body: "#!/bin/sh\n", mode: 0o4755},
		ent{name: "bin/tool-again", typ: tar.TypeLink, link: "bin/tool"},
		ent{name: "bin/latest", typ: tar.TypeSymlink, link: "tool"},
		ent{name: "etc/", typ: tar.TypeDir},
		ent{name: "etc/.wh.removed", body: ""},
		ent{name: "etc/conf", body: "key=value\n", xattrs: map[string]string{"user.origin": "pod", "user.bin": "\x00\x01\xff"}},
		ent{name: "home/", typ: tar.TypeDir},
		ent{name: "home/user/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		ent{name: "home/user/notes", body: "mine\n", mode: 0o600, uid: 1000, gid: 1000},
		ent{name: "opt/", typ: tar.TypeDir, xattrs: map[string]string{"user.dir": "x"}},
		ent{name: "opt/.wh..wh..opq"},
		ent{name: "opt/fresh", body: "new\n"},
		ent{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		ent{name: "var/.wh.cache"},
		ent{name: "z-" + strings.Repeat("n", 200), body: "long name\n"},
	)
}

func applyUpper(t testing.TB, data []byte) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "upper")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(context.Background(), dir, bytes.NewReader(data), Options{}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// comparable drops what two trees of the same content cannot share: inode
// numbers (hardlink groups are compared by first path instead).
func comparable(tree map[string]node) map[string]node {
	out := map[string]node{}
	first := map[uint64]string{}
	for _, p := range slices.Sorted(maps.Keys(tree)) {
		n := tree[p]
		if n.kind != 'd' && n.kind != 'c' && n.nlink > 1 {
			if f, ok := first[n.ino]; ok {
				n.target = "=" + f
			} else {
				first[n.ino] = p
			}
		}
		n.ino = 0
		out[p] = n
	}
	return out
}

func diffTrees(t testing.TB, got, want map[string]node) {
	t.Helper()
	got, want = comparable(got), comparable(want)
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		w := want[p]
		// Packed times are to the second.
		g.mtime, w.mtime = g.mtime.Truncate(time.Second), w.mtime.Truncate(time.Second)
		if w.kind == 'c' {
			// A whiteout is a whiteout whoever made it.
			g.mode, g.uid, g.gid, g.mtime, g.nlink, w.mode, w.uid, w.gid, w.mtime, w.nlink = 0, 0, 0, time.Time{}, 0, 0, 0, 0, time.Time{}, 0
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s:\n got %+v\nwant %+v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected", p)
		}
	}
}

func TestPackRoundTrip(t *testing.T) {
	needRoot(t)
	upper := applyUpper(t, upperTar(t))
	data, st := pack(t, upper, PackOptions{})
	again := applyUpper(t, data)
	diffTrees(t, readTree(t, again), readTree(t, upper))
	if st.Whiteouts != 2 || st.Opaques != 1 || st.Hardlinks != 1 || st.Skipped != 0 {
		t.Errorf("stats %+v: want 2 whiteouts, 1 opaque, 1 hardlink, none skipped", st)
	}
	if st.Bytes != int64(len("#!/bin/sh\n")+len("key=value\n")+len("mine\n")+len("new\n")+len("long name\n")) {
		t.Errorf("stats count %d content bytes", st.Bytes)
	}
}

func TestPackEntries(t *testing.T) {
	needRoot(t)
	upper := applyUpper(t, upperTar(t))
	data, _ := pack(t, upper, PackOptions{})
	ents := readPacked(t, data)
	var names []string
	byName := map[string]packEntry{}
	for _, e := range ents {
		names = append(names, e.name)
		byName[e.name] = e
	}
	want := []string{
		"./",
		"bin/", "bin/latest", "bin/tool", "bin/tool-again",
		"etc/", "etc/conf", "etc/.wh.removed", // the whiteout sorts as the name it hides
		"home/", "home/user/", "home/user/notes",
		"opt/", "opt/.wh..wh..opq", "opt/fresh",
		"tmp/",
		"var/", "var/.wh.cache",
		"z-" + strings.Repeat("n", 200),
	}
	if !slices.Equal(names, want) {
		t.Fatalf("entries:\n got %q\nwant %q", names, want)
	}
	if e := byName["bin/tool-again"]; e.typ != tar.TypeLink || e.link != "bin/tool" {
		t.Errorf("hardlink entry %+v", e)
	}
	if e := byName["bin/tool"]; e.typ != tar.TypeReg || e.mode != 0o4755 || e.body != "#!/bin/sh\n" {
		t.Errorf("setuid file entry %+v", e)
	}
	if e := byName["bin/latest"]; e.typ != tar.TypeSymlink || e.link != "tool" {
		t.Errorf("symlink entry %+v", e)
	}
	if e := byName["etc/.wh.removed"]; e.typ != tar.TypeReg || e.size != 0 || e.mode != 0 {
		t.Errorf("whiteout entry %+v", e)
	}
	if e := byName["home/user/"]; e.mode != 0o700 || e.uid != 1000 || e.gid != 1000 {
		t.Errorf("private dir entry %+v", e)
	}
	if e := byName["etc/conf"]; !maps.Equal(e.xattrs, map[string]string{"user.origin": "pod", "user.bin": "\x00\x01\xff"}) {
		t.Errorf("xattrs of etc/conf: %q", e.xattrs)
	}
	if e := byName["opt/"]; !maps.Equal(e.xattrs, map[string]string{"user.dir": "x"}) {
		t.Errorf("xattrs of opt/ (the opaque xattr must not be among them): %q", e.xattrs)
	}
	if e := byName["tmp/"]; e.mode != 0o1777 {
		t.Errorf("sticky dir entry %+v", e)
	}
	for _, e := range ents {
		for x := range e.xattrs {
			if isOverlayXattr(x) {
				t.Errorf("%s carries overlay xattr %s", e.name, x)
			}
		}
		if e.mtime.Nanosecond() != 0 {
			t.Errorf("%s: mtime %v has a fraction", e.name, e.mtime)
		}
	}
}

func TestPackReproducible(t *testing.T) {
	needRoot(t)
	upper := applyUpper(t, upperTar(t))
	first, _ := pack(t, upper, PackOptions{})
	second, _ := pack(t, upper, PackOptions{})
	if !bytes.Equal(first, second) {
		t.Error("two packs of the same upper differ")
	}
	// The same tree made again, at other times and inode numbers, packs
	// to the same bytes with fixed times.
	fixed := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	other := applyUpper(t, upperTar(t))
	now := time.Now()
	if err := os.Chtimes(filepath.Join(other, "etc", "conf"), now, now); err != nil {
		t.Fatal(err)
	}
	a, _ := pack(t, upper, PackOptions{FixedMtime: &fixed})
	b, _ := pack(t, other, PackOptions{FixedMtime: &fixed})
	if !bytes.Equal(a, b) {
		t.Error("packs of equal trees with FixedMtime differ")
	}
	for _, e := range readPacked(t, a) {
		if !e.mtime.Equal(fixed) {
			t.Errorf("%s: mtime %v, want the fixed %v", e.name, e.mtime, fixed)
		}
	}
}

// TestPackHostile: the upper is what a pod wrote. Links are packed as
// links, never followed; fifos and devices as entries, never opened;
// limits refuse with ErrLimit naming what crossed them.
func TestPackHostile(t *testing.T) {
	needRoot(t)
	tmp := t.TempDir()
	upper := filepath.Join(tmp, "upper")
	outside := filepath.Join(tmp, "outside")
	for _, d := range []string{upper, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(outside, filepath.Join(upper, "escape")))
	must(os.Symlink(filepath.Join(outside, "secret"), filepath.Join(upper, "secret")))
	must(os.Symlink("../../../../etc/shadow", filepath.Join(upper, "climb")))
	must(unix.Mkfifo(filepath.Join(upper, "fifo"), 0o644))
	must(unix.Mknod(filepath.Join(upper, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(upper, "disk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 0))))
	long := strings.Repeat("x", 255)
	must(os.WriteFile(filepath.Join(upper, long), []byte("longest name"), 0o644))
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(upper, "sock"), Net: "unix"})
	must(err)
	defer func() { _ = l.Close() }()
	// An xattr of the other overlay namespace is plain data to this
	// mount; a layer may not carry it.
	must(os.Mkdir(filepath.Join(upper, "fake-opaque"), 0o755))
	must(unix.Setxattr(filepath.Join(upper, "fake-opaque"), "user.overlay.opaque", []byte("y"), 0))

	var warned []string
	done := make(chan struct{})
	var data []byte
	var st PackStats
	go func() {
		defer close(done)
		data, st = pack(t, upper, PackOptions{Warn: func(name, reason string) { warned = append(warned, name+": "+reason) }})
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Pack blocked (opened the fifo?)")
	}
	byName := map[string]packEntry{}
	for _, e := range readPacked(t, data) {
		byName[e.name] = e
	}
	for name, target := range map[string]string{"escape": outside, "secret": filepath.Join(outside, "secret"), "climb": "../../../../etc/shadow"} {
		if e := byName[name]; e.typ != tar.TypeSymlink || e.link != target || e.size != 0 {
			t.Errorf("%s: %+v, want a symlink to %s", name, e, target)
		}
	}
	if strings.Contains(string(data), "host secret") {
		t.Error("the content outside the upper reached the layer")
	}
	if e := byName["fifo"]; e.typ != tar.TypeFifo {
		t.Errorf("fifo: %+v", e)
	}
	if e := byName["null"]; e.typ != tar.TypeChar || e.devmajor != 1 || e.devminor != 3 {
		t.Errorf("char device: %+v", e)
	}
	if e := byName["disk"]; e.typ != tar.TypeBlock || e.devmajor != 7 || e.devminor != 0 {
		t.Errorf("block device: %+v", e)
	}
	if e := byName[long]; e.body != "longest name" {
		t.Errorf("255-byte name: %+v", e)
	}
	if _, ok := byName["sock"]; ok || st.Skipped != 1 {
		t.Errorf("socket packed (stats %+v)", st)
	}
	if e := byName["fake-opaque/"]; e.typ != tar.TypeDir || len(e.xattrs) != 0 {
		t.Errorf("fake-opaque/: %+v", e)
	}
	if _, ok := byName["fake-opaque/.wh..wh..opq"]; ok {
		t.Error("user.overlay.opaque made a directory opaque on a trusted-xattr upper")
	}
	if got := strings.Join(warned, "\n"); !strings.Contains(got, "sock: ") || !strings.Contains(got, `"user.overlay.opaque"`) {
		t.Errorf("warnings:\n%s", got)
	}
	// The packed layer applies: devices and fifos are skipped there, the
	// rest is as packed.
	if _, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(data), Options{}); err != nil {
		t.Errorf("Apply of the packed hostile upper: %v", err)
	}
}

func TestPackLimits(t *testing.T) {
	needRoot(t)
	deep := t.TempDir()
	p := deep
	for range 20 {
		p = filepath.Join(p, "d")
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	longPath := t.TempDir()
	fd, err := unix.Open(longPath, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 { // 20 × 256 bytes: past PATH_MAX, made one level at a time
		comp := strings.Repeat("p", 255)
		if err := unix.Mkdirat(fd, comp, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, comp, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
	t.Cleanup(func() { removeDeep(t, longPath) })
	wide := t.TempDir()
	for i := range 20 {
		if err := os.WriteFile(filepath.Join(wide, fmt.Sprint(i)), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name string
		dir  string
		opts PackOptions
		want string
	}{
		{"depth", deep, PackOptions{MaxDepth: 10}, "nested 11 deep, beyond MaxDepth=10"},
		{"path length", longPath, PackOptions{}, "beyond the 4095 a layer entry may have"},
		{"entries", wide, PackOptions{MaxEntries: 10}, "MaxEntries=10"},
		{"file size", wide, PackOptions{MaxFileSize: 9}, "beyond MaxFileSize=9"},
		{"total size", wide, PackOptions{MaxTotalSize: 55}, "past MaxTotalSize=55"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Pack(context.Background(), tt.dir, io.Discard, tt.opts)
			if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrLimit saying %q", err, tt.want)
			}
		})
	}
	if _, err := Pack(context.Background(), deep, io.Discard, PackOptions{MaxDepth: 20}); err != nil {
		t.Errorf("20 deep within MaxDepth=20: %v", err)
	}
}

func TestPackRefusesOverlayFeatures(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		name, xattr, want string
		file              bool
	}{
		{"redirect", "trusted.overlay.redirect", "redirect_dir", false},
		{"metacopy", "trusted.overlay.metacopy", "metacopy", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			upper := t.TempDir()
			p := filepath.Join(upper, "x")
			var err error
			if tt.file {
				err = os.WriteFile(p, nil, 0o644)
			} else {
				err = os.Mkdir(p, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.Setxattr(p, tt.xattr, []byte("/y"), 0); err != nil {
				t.Fatal(err)
			}
			_, err = Pack(context.Background(), upper, io.Discard, PackOptions{})
			if !errors.Is(err, ErrOverlayFeature) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"x"`) {
				t.Errorf("got %v, want ErrOverlayFeature naming x and %s", err, tt.want)
			}
		})
	}
}

func TestPackUserXattrUpper(t *testing.T) {
	needRoot(t)
	upper := t.TempDir()
	if err := os.Mkdir(filepath.Join(upper, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "d"), "user.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	data, st := pack(t, upper, PackOptions{UserXattr: true})
	var names []string
	for _, e := range readPacked(t, data) {
		names = append(names, e.name)
		if len(e.xattrs) > 0 {
			t.Errorf("%s carries %q", e.name, e.xattrs)
		}
	}
	if !slices.Equal(names, []string{"./", "d/", "d/.wh..wh..opq"}) || st.Opaques != 1 {
		t.Errorf("entries %q, stats %+v", names, st)
	}
}

func TestPackRefusesMountInside(t *testing.T) {
	needRoot(t)
	upper := t.TempDir()
	mnt := filepath.Join(upper, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) }()
	_, err := Pack(context.Background(), upper, io.Discard, PackOptions{})
	if !errors.Is(err, ErrUnsafePath) || !strings.Contains(err.Error(), "mount point") {
		t.Errorf("got %v, want a refusal of the mount point", err)
	}
}

func TestPackCanceled(t *testing.T) {
	needRoot(t)
	upper := applyUpper(t, upperTar(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Pack(ctx, upper, io.Discard, PackOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// version is the content of the n-th version a writer writes: one byte
// repeated, so a mix of two versions shows.
func version(n int, size int) []byte { return bytes.Repeat([]byte{'a' + byte(n%26)}, size) }

func checkVersion(t testing.TB, name, body string, size int) {
	t.Helper()
	if len(body) != size || strings.Count(body, body[:1]) != size {
		head := body
		if len(head) > 64 {
			head = head[:64]
		}
		t.Errorf("%s: packed %d bytes starting %q: not one whole version", name, len(body), head)
	}
}

// TestPackLiveWriters packs an upper again and again while files in it are
// rewritten: each packed file must be one whole version, never a mix.
// "reopen" rewrites by open-truncate-write-close (the file is mostly not
// open: Pack leases it and the writer waits); "held" keeps the file open
// and rewrites it in place (Pack spools and checks it).
func TestPackLiveWriters(t *testing.T) {
	needRoot(t)
	const size = 1 << 20
	upper := t.TempDir()
	reopen, held := filepath.Join(upper, "reopen"), filepath.Join(upper, "held")
	for _, p := range []string{reopen, held} {
		if err := os.WriteFile(p, version(0, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(held, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := os.WriteFile(reopen, version(n, size), 0o644); err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	})
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond): // a writer that pauses, as most do
			}
			if _, err := f.WriteAt(version(n, size), 0); err != nil {
				t.Error(err)
				return
			}
			writes.Add(1)
		}
	})
	var total PackStats
	for range 30 {
		data, st := pack(t, upper, PackOptions{SpoolMemory: size / 2, SpoolDir: t.TempDir()})
		for _, e := range readPacked(t, data) {
			// os.WriteFile truncates before it writes: an empty file is
			// a moment of "reopen", if a rare one. A mix never is.
			if e.typ == tar.TypeReg && (e.name != "reopen" || e.body != "") {
				checkVersion(t, e.name, e.body, size)
			}
		}
		total.Leased += st.Leased
		total.Spooled += st.Spooled
		total.Retries += st.Retries
	}
	close(stop)
	wg.Wait()
	t.Logf("%d writes; files leased %d, spooled %d, copied again %d", writes.Load(), total.Leased, total.Spooled, total.Retries)
	if total.Leased == 0 || total.Spooled == 0 {
		t.Errorf("stats %+v: want both ways of reading exercised", total)
	}
}

// TestPackRefusesAFileThatNeverHoldsStill: a file open for writing that is
// written again during every copy is refused, naming it, after the copies
// PackOptions.Retries allows; one that holds still on a later copy packs.
func TestPackRefusesAFileThatNeverHoldsStill(t *testing.T) {
	needRoot(t)
	upper := t.TempDir()
	p := filepath.Join(upper, "busy")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644) // held open: no lease
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if _, err := f.WriteAt(version(0, 4096), 0); err != nil {
		t.Fatal(err)
	}
	writes := 0
	rewrite := func(limit int) func(string, bool) {
		return func(name string, leased bool) {
			if leased {
				t.Errorf("%s was leased while open for writing", name)
			}
			if writes++; writes <= limit {
				if _, err := f.WriteAt(version(writes, 4096), 0); err != nil {
					t.Error(err)
				}
			}
		}
	}
	_, err = Pack(context.Background(), upper, io.Discard, PackOptions{Retries: 3, afterRead: rewrite(100)})
	if !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), `"busy"`) || writes != 4 {
		t.Errorf("got %v after %d copies, want ErrFileChanged naming busy after 4", err, writes)
	}
	writes = 0
	var b bytes.Buffer
	st, err := Pack(context.Background(), upper, &b, PackOptions{Retries: 3, afterRead: rewrite(2)})
	if err != nil || st.Retries != 2 || st.Spooled != 1 {
		t.Fatalf("a file that holds still on the third copy: %v, stats %+v", err, st)
	}
	for _, e := range readPacked(t, b.Bytes()) {
		if e.name == "busy" && e.body != string(version(2, 4096)) {
			t.Errorf("packed %q..., want the version written last", e.body[:8])
		}
	}
}

// TestPackSeesATruncateUnderTheLease: truncate(2) by path through the
// overlay mount does not break the lease on the upper's inode (overlayfs
// passes it on without one); made while a leased file streams, it fails
// the pack, since the entry is already in the stream.
func TestPackSeesATruncateUnderTheLease(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(dir, "merged")
	data := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work,index=off", dir, dir, dir)
	if err := unix.Mount("overlay", merged, "overlay", 0, data); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Unmount(merged, unix.MNT_DETACH) }()
	p := filepath.Join(merged, "file")
	if err := os.WriteFile(p, version(0, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Pack(context.Background(), filepath.Join(dir, "upper"), io.Discard, PackOptions{afterRead: func(name string, leased bool) {
		if !leased {
			t.Errorf("%s was not leased", name)
		}
		if err := os.Truncate(p, 100); err != nil {
			t.Error(err)
		}
	}})
	if !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), `"file" changed after its content was streamed`) {
		t.Errorf("got %v, want ErrFileChanged naming file", err)
	}
}

// TestPackLeaseHoldsWritersOff: while Pack streams a leased file, a writer
// opening it through the overlay waits until Pack is done with it.
func TestPackLeaseHoldsWritersOff(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	merged := filepath.Join(dir, "merged")
	data := fmt.Sprintf("lowerdir=%s/lower,upperdir=%s/upper,workdir=%s/work,index=off", dir, dir, dir)
	if err := unix.Mount("overlay", merged, "overlay", 0, data); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Unmount(merged, unix.MNT_DETACH) }()
	p := filepath.Join(merged, "file")
	if err := os.WriteFile(p, version(0, 8192), 0o644); err != nil {
		t.Fatal(err)
	}
	opened := make(chan time.Time, 1)
	var b bytes.Buffer
	var released time.Time
	_, err := Pack(context.Background(), filepath.Join(dir, "upper"), &b, PackOptions{afterRead: func(string, bool) {
		go func() {
			if err := os.WriteFile(p, version(1, 8192), 0o644); err != nil {
				t.Error(err)
			}
			opened <- time.Now()
		}()
		time.Sleep(200 * time.Millisecond) // the writer is in open(2) by now
		released = time.Now()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if at := <-opened; at.Before(released) {
		t.Errorf("the writer got through %v before Pack let go of the file", released.Sub(at))
	}
	for _, e := range readPacked(t, b.Bytes()) {
		if e.name == "file" {
			checkVersion(t, e.name, e.body, 8192)
			if e.body[0] != 'a' {
				t.Errorf("packed version %q, want the one before the writer's", e.body[:1])
			}
		}
	}
}

// removeDeep removes a tree too deep for a path (t.TempDir's cleanup
// would fail on it), a level at a time.
func removeDeep(t testing.TB, dir string) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer unix.Close(fd)
	if err := removeAllAt(fd, strings.Repeat("p", 255)); err != nil {
		t.Error(err)
	}
}

func TestPackExclude(t *testing.T) {
	needRoot(t)
	upper := applyUpper(t, upperTar(t))
	data, st := pack(t, upper, PackOptions{Exclude: func(name string) bool { return name == "etc/conf" || name == "home" }})
	for _, e := range readPacked(t, data) {
		if e.name == "etc/conf" || strings.HasPrefix(e.name, "home/") {
			t.Errorf("excluded %s was packed", e.name)
		}
	}
	if st.Excluded != 2 {
		t.Errorf("stats %+v: want 2 excluded", st)
	}
}
