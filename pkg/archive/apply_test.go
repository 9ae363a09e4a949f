//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// want describes one expected path. Zero mtime means "not checked" (for
// directories Apply makes without a tar entry).
type want struct {
	kind     byte
	mode     uint32
	uid, gid uint32
	mtime    time.Time
	body     string
	target   string
	xattrs   map[string]string
	sameAs   string // hardlink: same inode as this path
}

func file(mode uint32, body string) want {
	return want{kind: 'f', mode: mode, body: body, mtime: epoch0}
}
func dir(mode uint32) want                { return want{kind: 'd', mode: mode, mtime: epoch0} }
func implicitDir() want                   { return want{kind: 'd', mode: 0o755} }
func symlink(target string) want          { return want{kind: 'l', mode: 0o777, target: target, mtime: epoch0} }
func whiteoutNode() want                  { return want{kind: 'c'} }
func (w want) owned(uid, gid uint32) want { w.uid, w.gid = uid, gid; return w }
func (w want) at(t time.Time) want        { w.mtime = t; return w }
func (w want) anyTime() want              { w.mtime = time.Time{}; return w }
func (w want) link(p string) want         { w.sameAs = p; return w }
func (w want) with(x map[string]string) want {
	w.xattrs = x
	return w
}

var opaqueX = map[string]string{overlayOpaqueXattr: "y"}

// checkTree asserts that tree holds exactly the paths of wants (the root
// "." only if listed) and that each matches.
func checkTree(t *testing.T, tree map[string]node, wants map[string]want) {
	t.Helper()
	got := slices.Sorted(maps.Keys(tree))
	got = slices.DeleteFunc(got, func(p string) bool { _, listed := wants["."]; return p == "." && !listed })
	if exp := slices.Sorted(maps.Keys(wants)); !slices.Equal(got, exp) {
		t.Errorf("tree paths:\n got %q\nwant %q", got, exp)
	}
	for p, w := range wants {
		n, ok := tree[p]
		if !ok {
			continue
		}
		if n.kind != w.kind {
			t.Errorf("%s: kind %c, want %c", p, n.kind, w.kind)
			continue
		}
		if n.kind != 'l' && n.mode != w.mode {
			t.Errorf("%s: mode %#o, want %#o", p, n.mode, w.mode)
		}
		if n.uid != w.uid || n.gid != w.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", p, n.uid, n.gid, w.uid, w.gid)
		}
		if !w.mtime.IsZero() && !n.mtime.Equal(w.mtime) {
			t.Errorf("%s: mtime %v, want %v", p, n.mtime, w.mtime)
		}
		if n.body != w.body {
			t.Errorf("%s: content %q, want %q", p, n.body, w.body)
		}
		if n.target != w.target {
			t.Errorf("%s: symlink target %q, want %q", p, n.target, w.target)
		}
		if n.kind == 'c' && n.rdev != 0 {
			t.Errorf("%s: device %#x, want 0/0 (whiteout)", p, n.rdev)
		}
		if !maps.Equal(n.xattrs, w.xattrs) {
			t.Errorf("%s: xattrs %q, want %q", p, n.xattrs, w.xattrs)
		}
		if w.sameAs != "" && n.ino != tree[w.sameAs].ino {
			t.Errorf("%s: inode %d, want %s's %d", p, n.ino, w.sameAs, tree[w.sameAs].ino)
		}
	}
}

// resolvers runs f with openat2 and with the O_NOFOLLOW walk used on
// kernels without it.
func resolvers(t *testing.T, f func(t *testing.T, walk bool)) {
	t.Run("openat2", func(t *testing.T) { f(t, false) })
	t.Run("walk", func(t *testing.T) { f(t, true) })
}

type warning struct{ name, reason string }

func applyBytes(t testing.TB, layer string, data []byte, opts Options, walk bool) (Stats, []warning, error) {
	t.Helper()
	var warns []warning
	opts.Warn = func(name, reason string) { warns = append(warns, warning{name, reason}) }
	opts.forceWalk = walk
	st, err := Apply(context.Background(), layer, bytes.NewReader(data), opts)
	return st, warns, err
}

var (
	t1 = time.Unix(1_500_000_000, 123_456_789)
	t2 = time.Unix(1_000_000_000, 0)
	// A v2 file capability blob: effective, cap_net_raw permitted.
	netRawCap = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
)

func TestApply(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name  string
		ents  []ent
		want  map[string]want
		stats Stats
	}{{
		name: "files, directories, modes and owners",
		ents: []ent{
			{name: "etc/", typ: tar.TypeDir},
			{name: "etc/passwd", body: "root:x:0:0"},
			{name: "usr/bin/sudo", mode: 0o4755, body: "sudo"},
			{name: "usr/bin/wall", mode: 0o2755, gid: 5, body: "wall"},
			{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
			{name: "home/u/secret", mode: 0o600, uid: 1000, gid: 1000, body: "s"},
			{name: "data/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
			{name: "shared/", typ: tar.TypeDir, mode: 0o2775, gid: 100},
			{name: "shared/f", mode: 0o664, gid: 100, body: "f"},
			{name: "setuid-user", mode: 0o4711, uid: 1000, gid: 1000, body: "x"},
			{name: "empty", mode: 0o444},
			{name: "odd", mode: 0o666, body: "umask does not apply"},
		},
		want: map[string]want{
			"etc":           dir(0o755),
			"etc/passwd":    file(0o644, "root:x:0:0"),
			"usr":           implicitDir(),
			"usr/bin":       implicitDir(),
			"usr/bin/sudo":  file(0o4755, "sudo"),
			"usr/bin/wall":  file(0o2755, "wall").owned(0, 5),
			"tmp":           dir(0o1777),
			"home":          implicitDir(),
			"home/u":        implicitDir(),
			"home/u/secret": file(0o600, "s").owned(1000, 1000),
			"data":          dir(0o700).owned(1000, 1000),
			"shared":        dir(0o2775).owned(0, 100),
			"shared/f":      file(0o664, "f").owned(0, 100),
			"setuid-user":   file(0o4711, "x").owned(1000, 1000),
			"empty":         file(0o444, ""),
			"odd":           file(0o666, "umask does not apply"),
		},
		stats: Stats{Entries: 12, Bytes: 41},
	}, {
		name: "times, with directory times set after their contents",
		ents: []ent{
			{name: "d/", typ: tar.TypeDir, mtime: t2},
			{name: "d/f", mtime: t1, body: "x"},
			{name: "d/sub/", typ: tar.TypeDir, mtime: t1},
			{name: "d/sub/l", typ: tar.TypeSymlink, link: "../f", mtime: t2},
			{name: "d/sub/g", body: "g"},
		},
		want: map[string]want{
			"d":       dir(0o755).at(t2),
			"d/f":     file(0o644, "x").at(t1),
			"d/sub":   dir(0o755).at(t1),
			"d/sub/l": symlink("../f").at(t2),
			"d/sub/g": file(0o644, "g"),
		},
		stats: Stats{Entries: 5, Bytes: 2},
	}, {
		name: "symlinks are created, never followed",
		ents: []ent{
			{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
			{name: "lib", typ: tar.TypeSymlink, link: "/usr/lib"},
			{name: "dangling", typ: tar.TypeSymlink, link: "../../nowhere", uid: 1000, gid: 1000, mtime: t1},
		},
		want: map[string]want{
			"bin":      implicitDir(),
			"bin/sh":   symlink("busybox"),
			"lib":      symlink("/usr/lib"),
			"dangling": symlink("../../nowhere").owned(1000, 1000).at(t1),
		},
		stats: Stats{Entries: 3},
	}, {
		name: "hardlinks share the inode",
		ents: []ent{
			{name: "bin/busybox", mode: 0o755, body: "bb"},
			{name: "bin/ls", typ: tar.TypeLink, link: "bin/busybox"},
			{name: "sbin/init", typ: tar.TypeLink, link: "/bin/busybox"},
			{name: "bin/cat", typ: tar.TypeLink, link: "./bin/../bin/busybox"},
			{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
			{name: "bin/ash", typ: tar.TypeLink, link: "bin/sh"},
		},
		want: map[string]want{
			"bin":         implicitDir(),
			"bin/busybox": file(0o755, "bb"),
			"bin/ls":      file(0o755, "bb").link("bin/busybox"),
			"bin/cat":     file(0o755, "bb").link("bin/busybox"),
			"sbin":        implicitDir(),
			"sbin/init":   file(0o755, "bb").link("bin/busybox"),
			"bin/sh":      symlink("busybox"),
			"bin/ash":     symlink("busybox").link("bin/sh"),
		},
		stats: Stats{Entries: 6, Bytes: 2},
	}, {
		name: "xattrs, kept across chown and writes",
		ents: []ent{
			{name: "f", body: "f", xattrs: map[string]string{"user.a": "1", "trusted.b": "x\x00y"}},
			{name: "ping", mode: 0o755, uid: 1000, gid: 1000, body: "ping", xattrs: map[string]string{"security.capability": netRawCap}},
			{name: "d/", typ: tar.TypeDir, xattrs: map[string]string{"user.dir": "yes"}},
			{name: "s", typ: tar.TypeSymlink, link: "f", xattrs: map[string]string{"trusted.sym": "1"}},
		},
		want: map[string]want{
			"f":    file(0o644, "f").with(map[string]string{"user.a": "1", "trusted.b": "x\x00y"}),
			"ping": file(0o755, "ping").owned(1000, 1000).with(map[string]string{"security.capability": netRawCap}),
			"d":    dir(0o755).with(map[string]string{"user.dir": "yes"}),
			"s":    symlink("f").with(map[string]string{"trusted.sym": "1"}),
		},
		stats: Stats{Entries: 4, Bytes: 5},
	}, {
		name: "whiteouts and opaque directories",
		ents: []ent{
			{name: ".wh.gone"},
			{name: "a/.wh.b"},
			{name: "o/", typ: tar.TypeDir},
			{name: "o/.wh..wh..opq"},
			{name: "p/.wh..wh..opq"},
			{name: "q/keep", body: "k"},
			{name: "q/.wh..wh..opq"},
			{name: "legacy", typ: tar.TypeChar},
		},
		want: map[string]want{
			"gone":   whiteoutNode(),
			"a":      implicitDir(),
			"a/b":    whiteoutNode(),
			"o":      dir(0o755).with(opaqueX),
			"p":      implicitDir().with(opaqueX),
			"q":      implicitDir().with(opaqueX),
			"q/keep": file(0o644, "k"),
			"legacy": whiteoutNode(),
		},
		stats: Stats{Entries: 8, Whiteouts: 3, Opaques: 3, Bytes: 1},
	}, {
		name: "later entries replace earlier ones",
		ents: []ent{
			{name: "x", body: "one"},
			{name: "x", mode: 0o600, body: "two"},
			{name: "y", body: "y"},
			{name: "y/", typ: tar.TypeDir, mode: 0o700},
			{name: "y/z", body: "z"},
			{name: "t/", typ: tar.TypeDir},
			{name: "t/a", body: "a"},
			{name: "t/b/c", body: "c"},
			{name: "t", body: "now a file"},
			{name: "m/", typ: tar.TypeDir},
			{name: "m/keep", body: "k"},
			{name: "m/", typ: tar.TypeDir, mode: 0o750, uid: 1000, gid: 1000, mtime: t1},
			{name: "h", body: "h"},
			{name: "h", typ: tar.TypeSymlink, link: "x"},
			{name: "l", typ: tar.TypeSymlink, link: "x"},
			{name: "l", typ: tar.TypeLink, link: "y/z"},
		},
		want: map[string]want{
			"x":      file(0o600, "two"),
			"y":      dir(0o700),
			"y/z":    file(0o644, "z"),
			"t":      file(0o644, "now a file"),
			"m":      dir(0o750).owned(1000, 1000).at(t1),
			"m/keep": file(0o644, "k"),
			"h":      symlink("x"),
			"l":      file(0o644, "z").link("y/z"),
		},
		stats: Stats{Entries: 16, Bytes: 22},
	}, {
		name: "a whiteout and an entry of the same name in one layer",
		ents: []ent{
			{name: "w/", typ: tar.TypeDir},
			{name: "w/f", body: "f"},
			{name: ".wh.w"},
			{name: ".wh.v"},
			{name: "v/", typ: tar.TypeDir},
			{name: "u", body: "u"},
			{name: ".wh.u"},
			{name: ".wh.r"},
			{name: "r", body: "r"},
		},
		want: map[string]want{
			"w":   dir(0o755).with(opaqueX),
			"w/f": file(0o644, "f"),
			"v":   dir(0o755).with(opaqueX),
			"u":   file(0o644, "u"),
			"r":   file(0o644, "r"),
		},
		stats: Stats{Entries: 9, Whiteouts: 4, Bytes: 3},
	}, {
		name: "names are read relative to the layer root",
		ents: []ent{
			{name: "./", typ: tar.TypeDir, mode: 0o750, mtime: t1},
			{name: "./etc/a", body: "a"},
			{name: "/etc/b", body: "b"},
			{name: "etc//c", body: "c"},
			{name: "etc/./d", body: "d"},
			{name: "x/../etc/e", body: "e"},
			{name: "//etc/f/", typ: tar.TypeDir},
		},
		want: map[string]want{
			".":     dir(0o750).at(t1),
			"etc":   implicitDir(),
			"etc/a": file(0o644, "a"),
			"etc/b": file(0o644, "b"),
			"etc/c": file(0o644, "c"),
			"etc/d": file(0o644, "d"),
			"etc/e": file(0o644, "e"),
			"etc/f": dir(0o755),
		},
		stats: Stats{Entries: 7, Bytes: 5},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resolvers(t, func(t *testing.T, walk bool) {
				tmp, layer := layerDirs(t)
				st, warns, err := applyBytes(t, layer, buildTar(t, tc.ents...), Options{}, walk)
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if st != tc.stats {
					t.Errorf("stats %+v, want %+v", st, tc.stats)
				}
				if len(warns) > 0 {
					t.Errorf("unexpected warnings %q", warns)
				}
				checkTree(t, readTree(t, layer), tc.want)
				checkContained(t, tmp)
			})
		})
	}
}

func TestApplySkips(t *testing.T) {
	needRoot(t)
	ents := []ent{
		{name: "null", typ: tar.TypeChar, major: 1, minor: 3},
		{name: "sda", typ: tar.TypeBlock, major: 8},
		{name: "p", body: "replaced by a fifo"},
		{name: "p", typ: tar.TypeFifo},
		{name: "devnull", typ: tar.TypeLink, link: "null"},
		{name: ".wh..wh.aufs", body: "aufs"},
		{name: ".wh..wh.plnk/", typ: tar.TypeDir},
		{name: ".wh..wh.plnk/1.2", body: "hidden"},
		{name: "a/.wh..wh.orph/x", body: "x"},
		{name: "kept", body: "k"},
	}
	resolvers(t, func(t *testing.T, walk bool) {
		tmp, layer := layerDirs(t)
		st, warns, err := applyBytes(t, layer, buildTar(t, ents...), Options{}, walk)
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if want := (Stats{Entries: 10, Skipped: 8, Bytes: 19}); st != want {
			t.Errorf("stats %+v, want %+v", st, want)
		}
		wantWarns := []string{"null", "sda", "p", "devnull", ".wh..wh.aufs", ".wh..wh.plnk/", ".wh..wh.plnk/1.2", "a/.wh..wh.orph/x"}
		var got []string
		for _, w := range warns {
			got = append(got, w.name)
			if w.reason == "" {
				t.Errorf("warning for %q has no reason", w.name)
			}
		}
		if !slices.Equal(got, wantWarns) {
			t.Errorf("warned about %q, want %q", got, wantWarns)
		}
		if !strings.Contains(warns[0].reason, "character device 1:3") {
			t.Errorf("device warning %q does not say which device", warns[0].reason)
		}
		checkTree(t, readTree(t, layer), map[string]want{"kept": file(0o644, "k")})
		checkContained(t, tmp)
	})
}

// countingReader counts what Apply read.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestApplyReadsToEnd(t *testing.T) {
	needRoot(t)
	data := buildTar(t, ent{name: "f", body: "f"})
	data = append(data, make([]byte, 9000)...) // record padding
	data = append(data, "trailing junk"...)
	_, layer := layerDirs(t)
	cr := &countingReader{r: bytes.NewReader(data)}
	if _, err := Apply(context.Background(), layer, cr, Options{}); err != nil {
		t.Fatal(err)
	}
	if cr.n != len(data) {
		t.Errorf("Apply read %d of %d bytes", cr.n, len(data))
	}
}

func TestApplyRefusesNonEmptyDir(t *testing.T) {
	needRoot(t)
	_, layer := layerDirs(t)
	if err := os.WriteFile(filepath.Join(layer, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Apply(context.Background(), layer, bytes.NewReader(buildTar(t, ent{name: "f"})), Options{})
	if err == nil || !strings.Contains(err.Error(), "must be empty") {
		t.Fatalf("Apply into a non-empty directory: %v, want a must-be-empty error", err)
	}
	if _, err := os.Stat(filepath.Join(layer, "f")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Apply wrote into a non-empty directory: %v", err)
	}
}

func TestApplyCanceled(t *testing.T) {
	needRoot(t)
	_, layer := layerDirs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Apply(ctx, layer, bytes.NewReader(buildTar(t, ent{name: "f"})), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply with a canceled context: %v, want context.Canceled", err)
	}
}

func TestApplyOptionsValidated(t *testing.T) {
	_, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(nil), Options{MaxEntries: -1})
	if err == nil || !strings.Contains(err.Error(), "negative limit") {
		t.Fatalf("negative MaxEntries: %v", err)
	}
}

// The deferred directory times must not land on whatever later replaced a
// directory, nor on directories under a replaced one.
func TestApplyDirTimesAfterReplacement(t *testing.T) {
	needRoot(t)
	data := buildTar(t,
		ent{name: "a/", typ: tar.TypeDir, mtime: t1},
		ent{name: "a/b/", typ: tar.TypeDir, mtime: t1},
		ent{name: "a", body: "file", mtime: t2},
		ent{name: "a/", typ: tar.TypeDir, mtime: t2},
		ent{name: "a/b", body: "file", mtime: t2},
	)
	_, layer := layerDirs(t)
	if _, _, err := applyBytes(t, layer, data, Options{}, false); err != nil {
		t.Fatal(err)
	}
	checkTree(t, readTree(t, layer), map[string]want{
		"a":   dir(0o755).at(t2),
		"a/b": file(0o644, "file").at(t2),
	})
}

func TestReadUmask(t *testing.T) {
	old := unix.Umask(0o027)
	defer unix.Umask(old)
	if m, ok := readUmask(); !ok || m != 0o027 {
		t.Fatalf("readUmask() = %#o, %v; want 027, true", m, ok)
	}
}

// Directories the layer implies get 0755 whatever the umask; explicit modes
// are exact too.
func TestApplyIgnoresUmask(t *testing.T) {
	needRoot(t)
	old := unix.Umask(0o077)
	defer unix.Umask(old)
	resolvers(t, func(t *testing.T, walk bool) {
		_, layer := layerDirs(t)
		data := buildTar(t,
			ent{name: "a/b/f", mode: 0o644, body: "f"},
			ent{name: "d/", typ: tar.TypeDir, mode: 0o755})
		if _, _, err := applyBytes(t, layer, data, Options{}, walk); err != nil {
			t.Fatal(err)
		}
		checkTree(t, readTree(t, layer), map[string]want{
			"a":     implicitDir(),
			"a/b":   implicitDir(),
			"a/b/f": file(0o644, "f"),
			"d":     dir(0o755),
		})
	})
}

func TestApplyBoundsTrailingData(t *testing.T) {
	needRoot(t)
	data := append(buildTar(t, ent{name: "f", body: "f"}), make([]byte, 64<<10)...)
	_, layer := layerDirs(t)
	_, _, err := applyBytes(t, layer, data, Options{MaxTotalSize: 32 << 10}, false)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("64 KiB after the tar end with MaxTotalSize 32 KiB: %v, want ErrLimit", err)
	}
}
