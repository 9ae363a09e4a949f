//go:build linux

package archive

import (
	"archive/tar"
	"errors"
	"io"
	"path/filepath"
	"testing"
)

// hostileCase is a layer that tries to escape, to plant something, or to
// exhaust a limit. outside is the absolute path of a directory next to the
// layer that holds "victim".
type hostileCase struct {
	name    string
	ents    func(outside string) []ent
	opts    Options
	wantErr error // nil: Apply must succeed
	skipped int
	want    map[string]want // if set, the whole resulting tree
}

func fixed(ents ...ent) func(string) []ent { return func(string) []ent { return ents } }

var pwned = "pwned"

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "dotdot escape", ents: fixed(ent{name: "../outside/victim", body: pwned}), wantErr: ErrInvalidName},
		{name: "dotdot in the middle", ents: fixed(ent{name: "a/../../outside/victim", body: pwned}), wantErr: ErrInvalidName},
		{name: "absolute dotdot", ents: fixed(ent{name: "/../outside/victim", body: pwned}), wantErr: ErrInvalidName},
		{name: "dotdot directory", ents: fixed(ent{name: "../", typ: tar.TypeDir}), wantErr: ErrInvalidName},
		{
			name: "absolute name lands inside",
			ents: fixed(ent{name: "/outside/victim", body: pwned}),
			want: map[string]want{"outside": implicitDir(), "outside/victim": file(0o644, pwned)},
		},
		{
			name: "write through relative symlink to outside",
			ents: fixed(
				ent{name: "s", typ: tar.TypeSymlink, link: "../outside"},
				ent{name: "s/victim", body: pwned}),
			wantErr: ErrUnsafePath,
		},
		{
			name: "write through absolute symlink to outside",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "s/victim", body: pwned},
				}
			},
			wantErr: ErrUnsafePath,
		},
		{
			name: "symlink directory then file under it, even inside",
			ents: fixed(
				ent{name: "real/", typ: tar.TypeDir},
				ent{name: "d", typ: tar.TypeSymlink, link: "real"},
				ent{name: "d/x", body: pwned}),
			wantErr: ErrUnsafePath,
		},
		{
			name: "symlink chain",
			ents: fixed(
				ent{name: "a", typ: tar.TypeSymlink, link: "b"},
				ent{name: "b", typ: tar.TypeSymlink, link: "../outside"},
				ent{name: "a/victim", body: pwned}),
			wantErr: ErrUnsafePath,
		},
		{
			name: "directory under a symlink",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "s/sub/", typ: tar.TypeDir},
				}
			},
			wantErr: ErrUnsafePath,
		},
		{
			name: "symlink under a symlink",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "s/victim", typ: tar.TypeSymlink, link: "/etc/shadow"},
				}
			},
			wantErr: ErrUnsafePath,
		},
		{
			name: "whiteout under a symlink",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "s/.wh.victim"},
				}
			},
			wantErr: ErrUnsafePath,
		},
		{
			name: "opaque marker under a symlink",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "s/.wh..wh..opq"},
				}
			},
			wantErr: ErrUnsafePath,
		},
		{
			name: "file replacing a symlink is not written through it",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: filepath.Join(outside, "victim")},
					{name: "s", body: pwned},
				}
			},
			want: map[string]want{"s": file(0o644, pwned)},
		},
		{
			name: "directory replacing a symlink",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "s/", typ: tar.TypeDir, mode: 0o700},
					{name: "s/victim", body: pwned},
				}
			},
			want: map[string]want{"s": dir(0o700), "s/victim": file(0o644, pwned)},
		},
		{
			name:    "file as a parent directory",
			ents:    fixed(ent{name: "f", body: "f"}, ent{name: "f/x", body: pwned}),
			wantErr: ErrUnsafePath,
		},
		{name: "hardlink to ../outside", ents: fixed(ent{name: "h", typ: tar.TypeLink, link: "../outside/victim"}), wantErr: ErrLinkTarget},
		{name: "hardlink to /etc/passwd", ents: fixed(ent{name: "h", typ: tar.TypeLink, link: "/etc/passwd"}), wantErr: ErrLinkTarget},
		{
			name: "hardlink to the absolute path of outside",
			ents: func(outside string) []ent {
				return []ent{{name: "h", typ: tar.TypeLink, link: filepath.Join(outside, "victim")}}
			},
			wantErr: ErrLinkTarget,
		},
		{
			name: "hardlink through a symlink",
			ents: func(outside string) []ent {
				return []ent{
					{name: "s", typ: tar.TypeSymlink, link: outside},
					{name: "h", typ: tar.TypeLink, link: "s/victim"},
				}
			},
			wantErr: ErrLinkTarget,
		},
		{name: "hardlink to a directory", ents: fixed(ent{name: "d/", typ: tar.TypeDir}, ent{name: "h", typ: tar.TypeLink, link: "d"}), wantErr: ErrLinkTarget},
		{name: "hardlink to the root", ents: fixed(ent{name: "h", typ: tar.TypeLink, link: "./"}), wantErr: ErrLinkTarget},
		{name: "hardlink to a whiteout", ents: fixed(ent{name: ".wh.gone"}, ent{name: "h", typ: tar.TypeLink, link: "gone"}), wantErr: ErrLinkTarget},
		{name: "hardlink to a later entry", ents: fixed(ent{name: "h", typ: tar.TypeLink, link: "f"}, ent{name: "f"}), wantErr: ErrLinkTarget},
		{
			name:    "device node",
			ents:    fixed(ent{name: "mem", typ: tar.TypeChar, major: 1, minor: 1}, ent{name: "sda", typ: tar.TypeBlock, major: 8}),
			skipped: 2,
			want:    map[string]want{},
		},
		{
			name:    "fifo",
			ents:    fixed(ent{name: "fifo", typ: tar.TypeFifo}),
			skipped: 1,
			want:    map[string]want{},
		},
		{
			name:    "huge declared size",
			ents:    fixed(ent{name: "big", size: 1 << 40}),
			wantErr: ErrLimit,
			want:    map[string]want{},
		},
		{
			name:    "file over MaxFileSize",
			ents:    fixed(ent{name: "f", body: "12345678901"}),
			opts:    Options{MaxFileSize: 10},
			wantErr: ErrLimit,
			want:    map[string]want{},
		},
		{
			name:    "layer over MaxTotalSize",
			ents:    fixed(ent{name: "a", body: "123456"}, ent{name: "b", body: "123456"}),
			opts:    Options{MaxTotalSize: 10},
			wantErr: ErrLimit,
		},
		{
			name:    "skipped data over MaxTotalSize",
			ents:    fixed(ent{name: "a", body: "123456"}, ent{name: "v", typ: 'V', body: "123456"}),
			opts:    Options{MaxTotalSize: 10},
			wantErr: ErrLimit,
		},
		{
			name:    "too many entries",
			ents:    fixed(ent{name: "a"}, ent{name: "b"}, ent{name: "c"}, ent{name: "d"}),
			opts:    Options{MaxEntries: 3},
			wantErr: ErrLimit,
		},
		{
			name:    "trusted.overlay.opaque xattr",
			ents:    fixed(ent{name: "d/", typ: tar.TypeDir, xattrs: map[string]string{"trusted.overlay.opaque": "y"}}),
			wantErr: ErrOverlayXattr,
			want:    map[string]want{},
		},
		{
			name:    "trusted.overlay.redirect xattr",
			ents:    fixed(ent{name: "d/", typ: tar.TypeDir, xattrs: map[string]string{"trusted.overlay.redirect": "/etc"}}),
			wantErr: ErrOverlayXattr,
		},
		{
			name:    "trusted.overlay.metacopy xattr on a file",
			ents:    fixed(ent{name: "f", xattrs: map[string]string{"trusted.overlay.metacopy": ""}}),
			wantErr: ErrOverlayXattr,
		},
		{
			name:    "user.overlay xattr",
			ents:    fixed(ent{name: "f", xattrs: map[string]string{"user.overlay.origin": "x"}}),
			wantErr: ErrOverlayXattr,
		},
		{
			name:    "libarchive-encoded overlay xattr",
			ents:    fixed(ent{name: "f", pax: map[string]string{"LIBARCHIVE.xattr.trusted%2Eoverlay%2Eopaque": "eQ=="}}),
			wantErr: ErrOverlayXattr,
		},
		{name: "whiteout of ..", ents: fixed(ent{name: "a/.wh..."}), wantErr: ErrInvalidName},
		{name: "whiteout of .", ents: fixed(ent{name: ".wh.."}), wantErr: ErrInvalidName},
		{name: "whiteout of nothing", ents: fixed(ent{name: "a/.wh."}), wantErr: ErrInvalidName},
		{name: "owner -1", ents: fixed(ent{name: "f", uid: -1}), wantErr: ErrInvalidHeader},
		{name: "file named like the root", ents: fixed(ent{name: "/", typ: tar.TypeSymlink, link: "/etc"}), wantErr: ErrInvalidHeader},
		{name: "truncated file data", ents: fixed(ent{name: "f", body: "short", size: 100}), wantErr: io.ErrUnexpectedEOF},
	}
}

func TestApplyHostile(t *testing.T) {
	needRoot(t)
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			resolvers(t, func(t *testing.T, walk bool) {
				tmp, layer := layerDirs(t)
				data := buildTar(t, tc.ents(filepath.Join(tmp, "outside"))...)
				st, warns, err := applyBytes(t, layer, data, tc.opts, walk)
				switch {
				case tc.wantErr == nil && err != nil:
					t.Errorf("Apply: %v", err)
				case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
					t.Errorf("Apply: %v, want %v", err, tc.wantErr)
				}
				if err != nil {
					t.Logf("error: %v", err)
				}
				if st.Skipped != tc.skipped || len(warns) != tc.skipped {
					t.Errorf("skipped %d with %d warnings, want %d", st.Skipped, len(warns), tc.skipped)
				}
				if tc.want != nil {
					checkTree(t, readTree(t, layer), tc.want)
				}
				checkContained(t, tmp)
			})
		})
	}
}
