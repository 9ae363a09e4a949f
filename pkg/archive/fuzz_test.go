//go:build linux

package archive

import (
	"bytes"
	"context"
	"path"
	"strings"
	"testing"
)

// FuzzApply feeds arbitrary bytes (through Decompress, so compressed input
// is fuzzed too) to Apply and checks that nothing panics and nothing lands
// outside the layer directory. Seeds are the table cases' tarballs, with
// "outside" for the absolute path of the sibling directory.
func FuzzApply(f *testing.F) {
	for _, tc := range hostileCases() {
		f.Add(buildTar(f, tc.ents("/outside")...))
	}
	f.Add(buildTar(f, ent{name: "s", typ: 'l', link: "../outside"}, ent{name: "s/victim", body: pwned}))
	f.Add(buildTar(f, ent{name: "d/", typ: '5'}, ent{name: "d/f", body: "f"}, ent{name: "d/.wh..wh..opq"}, ent{name: ".wh.x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		needRoot(t)
		tmp, layer := layerDirs(t)
		r, err := Decompress(bytes.NewReader(data))
		if err != nil {
			return
		}
		defer func() { _ = r.Close() }() // any input goes: errors are fine
		opts := Options{MaxEntries: 256, MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20}
		_, _ = Apply(context.Background(), layer, r, opts) // errors are fine; escapes are not
		checkContained(t, tmp)
	})
}

// FuzzCleanName checks that a cleaned name is relative, has no ".", ".."
// or empty component, and is stable.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"a/b", "/abs", "../x", "a/../../b", "./", "//a//b/", ".wh..", "a\x00b", ".."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := cleanName(name)
		if err != nil {
			return
		}
		if p == rootName {
			return
		}
		if strings.HasPrefix(p, "/") || path.Clean(p) != p {
			t.Fatalf("cleanName(%q) = %q, not clean and relative", name, p)
		}
		for _, c := range strings.Split(p, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("cleanName(%q) = %q has component %q", name, p, c)
			}
		}
		if again, err := cleanName(p); err != nil || again != p {
			t.Fatalf("cleanName not idempotent: %q -> %q -> %q, %v", name, p, again, err)
		}
		if dir, base := splitName(p); joinName(dir, base) != p || strings.Contains(base, "/") {
			t.Fatalf("splitName(%q) = %q, %q", p, dir, base)
		}
	})
}
