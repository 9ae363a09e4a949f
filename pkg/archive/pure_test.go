package archive

import (
	"errors"
	"slices"
	"testing"
)

func TestCleanName(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{in: "a/b", want: "a/b"},
		{in: "./a/b/", want: "a/b"},
		{in: "/abs/x", want: "abs/x"},
		{in: "//a//b", want: "a/b"},
		{in: "a/../b", want: "b"},
		{in: "./", want: "."},
		{in: "/", want: "."},
		{in: "..", err: ErrInvalidName},
		{in: "../a", err: ErrInvalidName},
		{in: "a/../../b", err: ErrInvalidName},
		{in: "/../a", err: ErrInvalidName},
		{in: "", err: ErrInvalidName},
		{in: "a\x00b", err: ErrInvalidName},
	}
	for _, tc := range tests {
		got, err := cleanName(tc.in)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("cleanName(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		in     string
		kind   entryKind
		target string
		err    error
	}{
		{in: "etc/passwd", kind: kindPlain},
		{in: ".wh.foo", kind: kindWhiteout, target: "foo"},
		{in: "a/b/.wh.c", kind: kindWhiteout, target: "a/b/c"},
		{in: "a/.wh..hidden", kind: kindWhiteout, target: "a/.hidden"},
		{in: "a/.wh..wh..opq", kind: kindOpaque, target: "a"},
		{in: ".wh..wh..opq", kind: kindOpaque, target: "."},
		{in: ".wh..wh.plnk", kind: kindAufsMeta},
		{in: ".wh..wh.plnk/123.4", kind: kindAufsMeta},
		{in: "a/.wh..wh.orph/x", kind: kindAufsMeta},
		{in: "a/x.wh..wh.y", kind: kindPlain},
		{in: ".wh.", err: ErrInvalidName},
		{in: "a/.wh..", err: ErrInvalidName},
		{in: "a/.wh...", err: ErrInvalidName},
	}
	for _, tc := range tests {
		kind, target, err := classify(tc.in)
		if !errors.Is(err, tc.err) || kind != tc.kind || target != tc.target {
			t.Errorf("classify(%q) = %v, %q, %v; want %v, %q, %v", tc.in, kind, target, err, tc.kind, tc.target, tc.err)
		}
	}
}

func TestEntryXattrs(t *testing.T) {
	got, err := entryXattrs(map[string]string{
		"SCHILY.xattr.user.b":          "2",
		"SCHILY.xattr.security.ima":    "\x00\x01",
		"SCHILY.xattr.user.a":          "1",
		"LIBARCHIVE.xattr.user.a":      "MQ==",
		"path":                         "ignored",
		"SCHILY.xattr.trusted.overlay": "not overlay's namespace",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []xattr{{"security.ima", "\x00\x01"}, {"trusted.overlay", "not overlay's namespace"}, {"user.a", "1"}, {"user.b", "2"}}
	if !slices.Equal(got, want) {
		t.Errorf("entryXattrs = %q, want %q", got, want)
	}
	for _, k := range []string{
		"SCHILY.xattr.trusted.overlay.opaque",
		"SCHILY.xattr.trusted.overlay.redirect",
		"SCHILY.xattr.user.overlay.origin",
		"LIBARCHIVE.xattr.trusted.overlay.metacopy",
		"LIBARCHIVE.xattr.trusted%2Eoverlay%2Eopaque",
	} {
		if _, err := entryXattrs(map[string]string{k: "y"}); !errors.Is(err, ErrOverlayXattr) {
			t.Errorf("entryXattrs(%q): %v, want ErrOverlayXattr", k, err)
		}
	}
}

func TestNeedChownChmod(t *testing.T) {
	root := creator{uid: 0, gid: 0, umask: 0o022, umaskKnown: true}
	plain := dirInfo{gid: 0}
	tests := []struct {
		name         string
		c            creator
		d            dirInfo
		want         owner
		isDir        bool
		chown, chmod bool
	}{
		{name: "root file 0644", c: root, d: plain, want: owner{mode: 0o644}},
		{name: "root dir 0755", c: root, d: plain, want: owner{mode: 0o755}, isDir: true},
		{name: "mode wider than umask", c: root, d: plain, want: owner{mode: 0o666}, chmod: true},
		{name: "setuid", c: root, d: plain, want: owner{mode: 0o4755}, chmod: true},
		{name: "sticky dir", c: root, d: plain, want: owner{mode: 0o1777}, isDir: true, chmod: true},
		{name: "other owner", c: root, d: plain, want: owner{uid: 1000, gid: 1000, mode: 0o644}, chown: true},
		{name: "other owner, setgid file", c: root, d: plain, want: owner{uid: 1000, mode: 0o2755}, chown: true, chmod: true},
		{name: "parent group differs", c: root, d: dirInfo{gid: 50}, want: owner{mode: 0o644}, chown: true},
		{name: "setgid parent, dir inherits", c: root, d: dirInfo{setgid: true}, want: owner{mode: 0o2755}, isDir: true},
		{name: "setgid parent, plain dir wanted", c: root, d: dirInfo{setgid: true}, want: owner{mode: 0o755}, isDir: true, chmod: true},
		{name: "default ACL", c: root, d: dirInfo{defaultACL: true}, want: owner{mode: 0o644}, chmod: true},
		{name: "umask unknown", c: creator{}, d: plain, want: owner{mode: 0o644}, chmod: true},
	}
	for _, tc := range tests {
		chown := needChown(tc.c, tc.d, tc.want)
		chmod := needChmod(tc.c, tc.d, tc.want, tc.isDir, chown)
		if chown != tc.chown || chmod != tc.chmod {
			t.Errorf("%s: chown %v chmod %v, want %v %v", tc.name, chown, chmod, tc.chown, tc.chmod)
		}
	}
}
