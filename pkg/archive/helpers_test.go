//go:build linux

package archive

import (
	"archive/tar"
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one tar entry to build. Zero fields get usable defaults: type
// regular file, mode 0644 (0755 for directories), mtime epoch0.
type ent struct {
	name     string
	typ      byte
	body     string
	mode     int64
	uid, gid int
	mtime    time.Time
	link     string
	xattrs   map[string]string
	pax      map[string]string
	major    int64
	minor    int64
	size     int64 // declared size, if not len(body); the tar then stops after this header
}

var epoch0 = time.Unix(1_600_000_000, 0)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// buildTar writes ents as a PAX tar. An entry with a declared size larger
// than its body ends the stream right after its header, as a truncated or
// hostile layer would.
func buildTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{
			Name:       e.name,
			Typeflag:   e.typ,
			Mode:       e.mode,
			Uid:        e.uid,
			Gid:        e.gid,
			ModTime:    e.mtime,
			Linkname:   e.link,
			Devmajor:   e.major,
			Devminor:   e.minor,
			PAXRecords: maps.Clone(e.pax),
			Format:     tar.FormatPAX,
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() {
			h.ModTime = epoch0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		h.Size = int64(len(e.body))
		if e.size > h.Size {
			h.Size = e.size
			if err := tw.WriteHeader(h); err != nil {
				t.Fatalf("tar header %q: %v", e.name, err)
			}
			// Flush refuses an entry short of its size, and writes nothing:
			// the archive ends inside the entry, as wanted.
			_ = tw.Flush()
			return b.Bytes()
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("tar header %q: %v", e.name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatalf("tar body %q: %v", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// node is what one path of an extracted tree looks like.
type node struct {
	kind     byte // 'f' file, 'd' dir, 'l' symlink, 'c' char device, '?' other
	mode     uint32
	uid, gid uint32
	mtime    time.Time
	body     string
	target   string
	rdev     uint64
	ino      uint64
	nlink    uint64
	xattrs   map[string]string
}

// readTree describes every path under dir (relative, slash-separated).
func readTree(t testing.TB, dir string) map[string]node {
	t.Helper()
	tree := map[string]node{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		tree[filepath.ToSlash(rel)] = readNode(t, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func readNode(t testing.TB, p string) node {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	n := node{
		mode:   st.Mode & modeMask,
		uid:    st.Uid,
		gid:    st.Gid,
		mtime:  time.Unix(st.Mtim.Unix()),
		rdev:   st.Rdev,
		ino:    st.Ino,
		nlink:  uint64(st.Nlink),
		xattrs: listXattrs(t, p),
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		n.kind = 'f'
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		n.body = string(b)
	case unix.S_IFDIR:
		n.kind = 'd'
	case unix.S_IFLNK:
		n.kind = 'l'
		n.target, _ = os.Readlink(p)
	case unix.S_IFCHR:
		n.kind = 'c'
	default:
		n.kind = '?'
	}
	return n
}

func listXattrs(t testing.TB, p string) map[string]string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var out map[string]string
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "security.selinux") {
			continue
		}
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", p, name, err)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(v[:m])
	}
	return out
}

// layerDirs makes <tmp>/layer (empty, for Apply) and <tmp>/outside/victim,
// a file hostile entries aim at.
func layerDirs(t testing.TB) (tmp, layer string) {
	t.Helper()
	tmp = t.TempDir()
	layer = filepath.Join(tmp, "layer")
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "outside"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "outside", "victim"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	return tmp, layer
}

// checkContained fails unless tmp still holds exactly layer/ and an intact
// outside/victim.
func checkContained(t testing.TB, tmp string) {
	t.Helper()
	top, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range top {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"layer", "outside"}) {
		t.Errorf("parent of layer holds %q, want only [layer outside]", names)
	}
	out := readTree(t, filepath.Join(tmp, "outside"))
	if len(out) != 2 || out["victim"].kind != 'f' || out["victim"].body != "original" || out["victim"].nlink != 1 {
		t.Errorf("outside/ was touched: %+v", out)
	}
}
