package layers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
	"github.com/layerset/layerset-csi/pkg/source"
)

// treeNode is what a tree comparison looks at of one path.
type treeNode struct {
	Kind   string // file, dir, symlink, char, block, fifo
	Mode   os.FileMode
	UID    uint32
	GID    uint32
	Size   int64
	SHA256 string // of a file's content
	Target string // a symlink's
	Mtime  int64  // seconds; not for directories, whose times any write inside moves
	Xattrs map[string]string
	LinkOf string // a hardlink: the first path (sorted) of its inode
}

// snapshot describes every path under dir, without following symlinks:
// names, types, modes, owners, sizes, content hashes, symlink targets,
// xattrs (overlayfs's and security.selinux aside) and hardlink groups.
// skip leaves paths out.
func snapshot(t testing.TB, dir string, skip ...string) map[string]treeNode {
	t.Helper()
	out := map[string]treeNode{}
	first := map[uint64]string{}
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if slices.Contains(skip, rel) {
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		n := treeNode{Mode: os.FileMode(st.Mode & 0o7777), UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Sec, Xattrs: xattrsOf(t, p)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			n.Kind, n.Size = "file", st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			n.SHA256 = hex.EncodeToString(sum[:])
		case unix.S_IFDIR:
			n.Kind, n.Mtime = "dir", 0
		case unix.S_IFLNK:
			n.Kind = "symlink"
			n.Target, _ = os.Readlink(p)
		case unix.S_IFCHR:
			n.Kind = fmt.Sprintf("char %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFBLK:
			n.Kind = "block"
		case unix.S_IFIFO:
			n.Kind = "fifo"
		}
		if n.Kind != "dir" && st.Nlink > 1 {
			if f, ok := first[st.Ino]; ok {
				n.LinkOf = f
			} else {
				first[st.Ino] = rel
			}
		}
		out[rel] = n
	}
	return out
}

func xattrsOf(t testing.TB, p string) map[string]string {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		t.Fatalf("listxattr %s: %v", p, err)
	}
	var out map[string]string
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || name == "security.selinux" {
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

func compareTrees(t testing.TB, what string, got, want map[string]treeNode) {
	t.Helper()
	for _, p := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %s missing", what, p)
			continue
		}
		if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", want[p]) {
			t.Errorf("%s: %s:\n got %+v\nwant %+v", what, p, g, want[p])
		}
	}
	for _, p := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: %s unexpected: %+v", what, p, got[p])
		}
	}
}

// commitBase is the image a committed volume starts from.
func commitBase(t testing.TB) v1.Image {
	t.Helper()
	base := mustLayer(t, testimage.Gzip,
		testimage.Dir("etc"),
		testimage.File("etc/os-release", "base\n"),
		testimage.File("etc/removed", "gone soon\n"),
		testimage.File("etc/keep", "kept\n"),
		testimage.File("etc/motd", "the image's motd\n"),
		testimage.Dir("opt/tool/sub"),
		testimage.File("opt/tool/old", "old tool\n"),
		testimage.File("opt/tool/sub/deep", "deep\n"),
		testimage.File("data/doomed/a", "a\n"),
		testimage.File("data/doomed/b", "b\n"),
		testimage.File("data/stays", "stays\n"),
		withXattr(testimage.File("bin/run", "#!/bin/sh\necho run\n"), "user.layer", "base"),
		testimage.Symlink("bin/latest", "run"),
		testimage.File("share/modify", "original\n"),
	)
	// Gzip and plain tar: the umoci of Debian 12 (0.4.7) reads no zstd.
	top := mustLayer(t, testimage.None, testimage.File("etc/os-release", "top\n"))
	img, err := testimage.Image(base, top)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

var commitInit = []InitFile{
	{Path: "etc/pod-identity", Data: []byte("ns/pod on node\n"), Mode: 0o444},
	{Path: "etc/motd", Data: []byte("managed by layerset-csi\n")},
}

func initPaths() []string {
	var out []string
	for _, f := range commitInit {
		out = append(out, f.Path)
	}
	return out
}

// writeAsPod makes, in the merged view at m, every kind of change a pod
// can: new files, modified, chmodded and deleted lower files, a deleted
// directory, one made opaque, hardlinks, symlinks, xattrs, a private
// directory of another owner, writes to an init file.
func writeAsPod(t testing.TB, m string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	j := func(p string) string { return filepath.Join(m, p) }
	must(os.MkdirAll(j("new/deeper"), 0o755))
	must(os.WriteFile(j("new/file"), []byte("new file\n"), 0o640))
	big := make([]byte, 3<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	must(os.WriteFile(j("new/deeper/big"), big, 0o644))
	must(os.Link(j("new/file"), j("new/file-link")))
	must(os.Link(j("bin/run"), j("bin/run-hard"))) // a lower file: copied up, then linked
	must(os.Symlink("file", j("new/sym")))
	must(os.Symlink("/etc/os-release", j("new/abs-sym")))
	must(os.Symlink("../../../outside", j("new/climbing-sym")))
	must(os.WriteFile(j("share/modify"), []byte("modified\n"), 0o644))
	must(os.Chmod(j("etc/keep"), 0o600))
	must(os.Remove(j("etc/removed")))
	must(os.RemoveAll(j("data/doomed")))
	must(os.RemoveAll(j("opt/tool")))
	must(os.Mkdir(j("opt/tool"), 0o750))
	must(os.WriteFile(j("opt/tool/new"), []byte("new tool\n"), 0o755))
	must(unix.Setxattr(j("new/file"), "user.note", []byte("hello"), 0))
	must(unix.Setxattr(j("share/modify"), "user.edited", []byte{0, 1, 2, 255}, 0))
	must(os.MkdirAll(j("home/user"), 0o755))
	must(os.Chmod(j("home/user"), 0o700))
	must(os.WriteFile(j("home/user/notes"), []byte("private\n"), 0o600))
	must(os.Lchown(j("home/user/notes"), 1000, 1000))
	must(os.Lchown(j("home/user"), 1000, 1000))
	must(os.WriteFile(j("etc/pod-identity"), []byte("rewritten by the pod\n"), 0o644)) // an init file, copied up
}

// pullBase pushes commitBase to a registry of its own and pulls it into s;
// the options reach that registry again.
func pullBase(t testing.TB, s *Store) (*source.Image, source.Options) {
	t.Helper()
	reg := testimage.NewRegistry(t)
	ref := reg.Push(t, "base:v1", commitBase(t))
	opts := source.Options{Insecure: []string{reg.Host}}
	img, err := s.Pull(context.Background(), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	return img, opts
}

func TestCommit(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t, overlay.ModeAuto)
	img, srcOpts := pullBase(t, s)
	live := mountVolume(t, s, VolumeSpec{ID: "live", Layers: chainOf(img), Init: commitInit, Target: filepath.Join(t.TempDir(), "live")})
	writeAsPod(t, live.Target)
	if b := readFile(t, filepath.Join(live.Target, "etc/motd")); b != "managed by layerset-csi\n" {
		t.Fatalf("init file etc/motd reads %q", b)
	}
	want := snapshot(t, live.Target, initPaths()...)
	// What the comparison rests on is in the live view as written.
	for p, check := range map[string]func(treeNode) bool{
		"home/user":        func(n treeNode) bool { return n.Kind == "dir" && n.UID == 1000 && n.Mode == 0o700 },
		"new/file-link":    func(n treeNode) bool { return n.LinkOf == "new/file" },
		"bin/run-hard":     func(n treeNode) bool { return n.LinkOf == "bin/run" },
		"new/file":         func(n treeNode) bool { return n.Xattrs["user.note"] == "hello" && n.Mode == 0o640 },
		"bin/run":          func(n treeNode) bool { return n.Xattrs["user.layer"] == "base" },
		"new/climbing-sym": func(n treeNode) bool { return n.Kind == "symlink" && n.Target == "../../../outside" },
		"etc/keep":         func(n treeNode) bool { return n.Mode == 0o600 },
	} {
		if !check(want[p]) {
			t.Errorf("live view: %s is %+v", p, want[p])
		}
	}
	for _, p := range []string{"etc/removed", "data/doomed", "opt/tool/old", "opt/tool/sub"} {
		if _, ok := want[p]; ok {
			t.Errorf("live view: %s is still there", p)
		}
	}
	// Without the init layer, etc/motd is the image's again.
	want["etc/motd"] = snapshot(t, filepath.Join(s.Dir(), layerName(t, img.Layers[0].DiffID), diffName))["etc/motd"]

	var warned []string
	res, err := s.Commit(ctx, "live", CommitOptions{Warn: func(n, r string) { warned = append(warned, n+": "+r) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(warned) > 0 {
		t.Errorf("warnings: %q", warned)
	}
	if !slices.Equal(res.Chain, chainOf(img)) || res.Existed || res.Layer.MediaType != "application/vnd.oci.image.layer.v1.tar+zstd" {
		t.Errorf("result %+v", res)
	}
	if res.Pack.Whiteouts != 2 || res.Pack.Opaques != 1 || res.Pack.Hardlinks != 2 || res.Pack.Excluded != 1 {
		t.Errorf("pack stats %+v: want 2 whiteouts (etc/removed, data/doomed), 1 opaque, 2 hardlinks, 1 init file left out", res.Pack)
	}
	checkKeptBlob(t, s, res)
	entries := layerEntries(t, res.Layer)
	for _, name := range []string{"etc/pod-identity", "etc/motd"} {
		if slices.Contains(entries, name) {
			t.Errorf("the committed layer holds init file %s", name)
		}
	}
	for _, name := range []string{"etc/.wh.removed", "data/.wh.doomed", "opt/tool/.wh..wh..opq", "new/file-link"} {
		if !slices.Contains(entries, name) {
			t.Errorf("the committed layer lacks %s: %q", name, entries)
		}
	}

	// The chain plus the committed layer, under a fresh upper, shows what
	// the live volume shows, its init files aside.
	again := mountVolume(t, s, VolumeSpec{ID: "again", Layers: res.Layers(), Target: filepath.Join(t.TempDir(), "again")})
	compareTrees(t, "composed from the commit", snapshot(t, again.Target), want)

	// The same image, written as an OCI layout, unpacked by other tools.
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skip("umoci is not installed (bash hack/test-packages.sh installs it)")
	}
	dir := filepath.Join(t.TempDir(), "layout")
	writeCommitLayout(t, s, res, dir, "zstd", srcOpts)
	// Debian 12's umoci reads no zstd: the gzip commit of the same upper
	// is the same layer (diff_id), another blob.
	gz, err := s.Commit(ctx, "live", CommitOptions{Compression: Gzip})
	if err != nil {
		t.Fatal(err)
	}
	if gz.Layer.DiffID != res.Layer.DiffID || !gz.Existed {
		t.Errorf("gzip commit of the same upper: %+v, existed %v; want diff_id %s", gz.Layer, gz.Existed, res.Layer.DiffID)
	}
	writeCommitLayout(t, s, gz, dir, "gzip", srcOpts)
	compareTrees(t, "unpacked by umoci", umociUnpack(t, dir, "gzip"), want)
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Log("skopeo is not installed: the zstd image is not read by another tool")
		return
	}
	// skopeo reads the zstd image (checking every blob) and writes it
	// with gzip for umoci.
	plain := filepath.Join(t.TempDir(), "plain")
	if out, err := exec.Command("skopeo", "copy", "--dest-compress-format", "gzip", "oci:"+dir+":zstd", "oci:"+plain+":plain").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	compareTrees(t, "copied by skopeo, unpacked by umoci", umociUnpack(t, plain, "plain"), want)
}

// umociUnpack unpacks image tag of the layout at dir and snapshots its
// root filesystem.
func umociUnpack(t testing.TB, dir, tag string) map[string]treeNode {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--image", dir+":"+tag, bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack %s: %v\n%s", tag, err, out)
	}
	return snapshot(t, filepath.Join(bundle, "rootfs"))
}

func layerName(t testing.TB, d v1.Hash) string {
	t.Helper()
	n, err := layerDirName(d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkKeptBlob: the blob is in the layer's directory, hashes to its
// digest, and decompresses to the layer's diff_id; the layer is recorded
// as a commit's.
func checkKeptBlob(t testing.TB, s *Store, res *CommitResult) {
	t.Helper()
	kept, err := s.LayerBlob(res.Layer.DiffID)
	if err != nil {
		t.Fatal(err)
	}
	if kept != res.Layer {
		t.Errorf("LayerBlob %+v, Commit said %+v", kept, res.Layer)
	}
	rc, err := kept.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	tr, err := archive.Decompress(rc)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, tr); err != nil {
		t.Fatal(err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != res.Layer.DiffID.String() {
		t.Errorf("blob decompresses to %s, diff_id is %s", got, res.Layer.DiffID)
	}
	meta, err := s.LayerMeta(res.Layer.DiffID)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Source != CommitSourcePrefix+res.VolumeID || meta.Digest != res.Layer.Digest.String() {
		t.Errorf("layer meta %+v", meta)
	}
}

// layerEntries lists the names in the committed layer's tar.
func layerEntries(t testing.TB, b Blob) []string {
	t.Helper()
	rc, err := b.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	zr, err := archive.Decompress(rc)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSuffix(hdr.Name, "/"))
	}
}

func writeCommitLayout(t testing.TB, s *Store, res *CommitResult, dir, tag string, opts source.Options) v1.Image {
	t.Helper()
	img, err := s.CommitImage(context.Background(), res, ImageOptions{Source: opts})
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		p, err = layout.Write(dir, empty.Index)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestCommitImage: the image of a commit lists the chain's own blobs (the
// pulled ones fetched again, a committed one from the store) and the new
// layer, with diff_ids and history in step, and reads back through
// pkg/source as any image does.
func TestCommitImage(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t, overlay.ModeAuto)
	reg := testimage.NewRegistry(t)
	base := commitBase(t)
	ref := reg.Push(t, "base:v1", base)
	srcOpts := source.Options{Insecure: []string{reg.Host}}
	pulled, err := s.Pull(ctx, ref, srcOpts)
	if err != nil {
		t.Fatal(err)
	}
	first := mountVolume(t, s, VolumeSpec{ID: "first", Layers: chainOf(pulled), Target: filepath.Join(t.TempDir(), "first")})
	if err := os.WriteFile(filepath.Join(first.Target, "first"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	r1, err := s.Commit(ctx, "first", CommitOptions{Compression: Gzip})
	if err != nil {
		t.Fatal(err)
	}
	second := mountVolume(t, s, VolumeSpec{ID: "second", Layers: r1.Layers(), Target: filepath.Join(t.TempDir(), "second")})
	if err := os.WriteFile(filepath.Join(second.Target, "second"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2, err := s.Commit(ctx, "second", CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	img, err := s.CommitImage(ctx, r2, ImageOptions{Created: created, Author: "tester", Comment: "second commit", Source: srcOpts})
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	baseManifest, err := base.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var wantDigests []v1.Hash
	for _, l := range baseManifest.Layers {
		wantDigests = append(wantDigests, l.Digest)
	}
	wantDigests = append(wantDigests, r1.Layer.Digest, r2.Layer.Digest)
	var gotDigests []v1.Hash
	for _, l := range m.Layers {
		gotDigests = append(gotDigests, l.Digest)
		if !strings.HasPrefix(string(l.MediaType), "application/vnd.oci.image.layer.v1.tar") {
			t.Errorf("layer %s has media type %s", l.Digest, l.MediaType)
		}
	}
	if !slices.Equal(gotDigests, wantDigests) {
		t.Errorf("manifest layers %v, want the base's own blobs then the two commits' %v", gotDigests, wantDigests)
	}
	if !slices.Equal(cfg.RootFS.DiffIDs, r2.Layers()) {
		t.Errorf("diff_ids %v, want %v", cfg.RootFS.DiffIDs, r2.Layers())
	}
	if len(cfg.History) != len(m.Layers) || cfg.History[len(cfg.History)-1].Comment != "second commit" ||
		!strings.Contains(cfg.History[len(cfg.History)-1].CreatedBy, "second") || !cfg.Created.Equal(created) || cfg.Author != "tester" {
		t.Errorf("config: created %v, author %q, history %+v", cfg.Created, cfg.Author, cfg.History)
	}
	// Pushed, and read back as an image like any other: every blob is
	// checked against its digest, every diff_id against the config.
	pushedRef := reg.Push(t, "committed:v1", img)
	again := openStore(t, overlay.ModeAuto)
	got, err := again.Pull(ctx, pushedRef, srcOpts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(chainOf(got), r2.Layers()) {
		t.Errorf("pulled chain %v, want %v", chainOf(got), r2.Layers())
	}
	vol := mountVolume(t, again, VolumeSpec{ID: "check", Layers: chainOf(got), Target: filepath.Join(t.TempDir(), "check")})
	for name, body := range map[string]string{"first": "1", "second": "2", "etc/os-release": "top\n"} {
		if b := readFile(t, filepath.Join(vol.Target, name)); b != body {
			t.Errorf("%s reads %q, want %q", name, b, body)
		}
	}
}

// TestCommitReproducible: with fixed times, the same upper commits to the
// same layer and blob; a second commit finds the layer and keeps its blob.
func TestCommitReproducible(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, commitBase(t))
	for _, id := range []string{"a", "b"} {
		v := mountVolume(t, s, VolumeSpec{ID: id, Layers: chainOf(img), Init: commitInit, Target: filepath.Join(t.TempDir(), id)})
		writeAsPod(t, v.Target)
	}
	fixed := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	ra, err := s.Commit(ctx, "a", CommitOptions{FixedMtime: &fixed})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := s.Commit(ctx, "b", CommitOptions{FixedMtime: &fixed})
	if err != nil {
		t.Fatal(err)
	}
	// Two pods' writes differ in nothing but times, so the layers are
	// equal, but for the two uppers' roots and copied-up directories,
	// which are fixed too.
	if ra.Layer.DiffID != rb.Layer.DiffID || ra.Layer.Digest != rb.Layer.Digest {
		t.Errorf("commits of equal uppers differ: %+v vs %+v", ra.Layer, rb.Layer)
	}
	if ra.Existed || !rb.Existed {
		t.Errorf("existed: first %v, second %v", ra.Existed, rb.Existed)
	}
	rg, err := s.Commit(ctx, "b", CommitOptions{FixedMtime: &fixed, Compression: Gzip})
	if err != nil {
		t.Fatal(err)
	}
	if rg.Layer.DiffID != ra.Layer.DiffID || rg.Layer.Digest == ra.Layer.Digest || rg.Layer.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("gzip commit %+v", rg.Layer)
	}
	entries, err := os.ReadDir(filepath.Join(s.Dir(), layerName(t, ra.Layer.DiffID), blobsDir))
	if err != nil || len(entries) != 2 {
		t.Errorf("kept blobs of the layer: %v %v, want the zstd and the gzip one", entries, err)
	}
}

// TestCommitLiveWriters commits a volume while its pod rewrites files:
// each committed file is one whole version. "inplace" is rewritten in place
// through a descriptor held open (the commit copies and checks it); "fresh"
// is opened, rewritten and closed again and again (the commit leases it).
func TestCommitLiveWriters(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	const size = 2 << 20
	s := openStore(t, overlay.ModeAuto)
	img := pull(t, s, commitBase(t))
	v := mountVolume(t, s, VolumeSpec{ID: "busy", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "busy")})
	inplace, fresh := filepath.Join(v.Target, "inplace"), filepath.Join(v.Target, "fresh")
	for _, p := range []string{inplace, fresh} {
		if err := os.WriteFile(p, bytes.Repeat([]byte{'a'}, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(inplace, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	writer := func(write func(body []byte) error, pause time.Duration) {
		wg.Go(func() {
			for n := 1; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(pause):
				}
				if err := write(bytes.Repeat([]byte{'a' + byte(n%26)}, size)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	writer(func(b []byte) error { _, err := f.WriteAt(b, 0); return err }, 10*time.Millisecond)
	writer(func(b []byte) error {
		g, err := os.OpenFile(fresh, os.O_WRONLY, 0) // no truncation: every moment is a whole version
		if err != nil {
			return err
		}
		_, err = g.WriteAt(b, 0)
		return errors.Join(err, g.Close())
	}, time.Millisecond)
	var leased, spooled int
	for range 5 {
		res, err := s.Commit(ctx, "busy", CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		leased, spooled = leased+res.Pack.Leased, spooled+res.Pack.Spooled
		diff := filepath.Join(s.Dir(), layerName(t, res.Layer.DiffID), diffName)
		for _, name := range []string{"inplace", "fresh"} {
			b, err := os.ReadFile(filepath.Join(diff, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != size || bytes.Count(b, b[:1]) != size {
				t.Errorf("%s: committed %d bytes that are not one version", name, len(b))
			}
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("files leased %d, spooled %d", leased, spooled)
	if leased == 0 || spooled == 0 {
		t.Errorf("leased %d, spooled %d: want both ways exercised", leased, spooled)
	}
}

// TestCommitKeptImageVolume commits a sized volume whose upper lives in a
// filesystem image, unmounted and kept (as a persistent volume between
// pods): the image is mounted for the commit and unmounted again.
func TestCommitKeptImageVolume(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("mkfs.ext4 is not installed (bash hack/test-packages.sh installs it)")
	}
	ctx := context.Background()
	s, err := Open(ctx, Options{Root: t.TempDir(), NoSync: true, Quota: quota.Options{Mode: quota.ModeFallback}})
	if err != nil {
		t.Fatal(err)
	}
	img := pull(t, s, commitBase(t))
	v, err := s.Mount(ctx, VolumeSpec{ID: "sized", Layers: chainOf(img), Size: 64 * mib, Target: filepath.Join(t.TempDir(), "sized")})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v.Target, "kept"), []byte("in the image"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmount(ctx, "sized", KeepUpper); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Unmount(ctx, "sized", RemoveUpper) })
	res, err := s.Commit(ctx, "sized", CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(layerEntries(t, res.Layer), "kept") {
		t.Error("the commit of the kept volume lacks its file")
	}
	if mounted, err := overlay.IsMounted(filepath.Join(v.Dir, quota.ImageMount)); err != nil || mounted {
		t.Errorf("the volume's image is still mounted after the commit (%v)", err)
	}
}

func TestCommitErrors(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t, overlay.ModeAuto)
	if _, err := s.Commit(ctx, "nope", CommitOptions{}); !errors.Is(err, ErrVolumeNotFound) {
		t.Errorf("unknown volume: %v", err)
	}
	if _, err := s.Commit(ctx, "nope", CommitOptions{Compression: "lz4"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown compression: %v", err)
	}
	img := pull(t, s, commitBase(t))
	v := mountVolume(t, s, VolumeSpec{ID: "redirected", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "r")})
	// What overlayfs writes with redirect_dir on, made by hand.
	d := filepath.Join(v.UpperDir(), "renamed")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(d, "trusted.overlay.redirect", []byte("/opt/tool"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, "redirected", CommitOptions{}); !errors.Is(err, archive.ErrOverlayFeature) {
		t.Errorf("redirected directory: %v", err)
	}
	if staged, _ := os.ReadDir(filepath.Join(s.Dir(), stagingDir)); len(staged) != 0 {
		t.Errorf("a failed commit left %d entries in staging", len(staged))
	}
}

// BenchmarkCommit commits a ~100 MiB upper (the files of BenchmarkImport's
// layer, written into a mounted volume) with zstd beside `tar -c | zstd`
// of the same directory into a file, the two alternating. "commit" is
// Store.Commit: pack, both digests, the blob kept, the layer extracted into
// the store and published. "pack" is archive.Pack into zstd into a file,
// what tar | zstd does. x-tar is ours over tar's time, x-tar-size the
// blob's size over tar's; x-tar-x compares a commit with the same work done
// by tools, `tar -c | tee >(zstd) | tar -x`. Nothing syncs.
func BenchmarkCommit(b *testing.B) {
	needRoot(b)
	for _, tool := range []string{"tar", "zstd"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is the baseline and is not installed", tool)
		}
	}
	ctx := context.Background()
	dir := b.TempDir()
	blob, _ := writeBigLayer(b, dir)
	s, err := Open(ctx, Options{Root: filepath.Join(dir, "root"), NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	img := pull(b, s, commitBase(b))
	v := mountVolume(b, s, VolumeSpec{ID: "bench", Layers: chainOf(img), Target: filepath.Join(dir, "mnt")})
	if out, err := exec.Command("tar", "-xzf", blob, "-C", v.Target).CombinedOutput(); err != nil {
		b.Fatalf("tar: %v: %s", err, out)
	}
	var size int64
	if err := filepath.WalkDir(v.UpperDir(), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			fi, err := d.Info()
			if err == nil {
				size += fi.Size()
			}
		}
		return err
	}); err != nil {
		b.Fatal(err)
	}
	tarOut, packOut := filepath.Join(dir, "tar.zst"), filepath.Join(dir, "pack.zst")
	tarZstd := func() time.Duration {
		start := time.Now()
		cmd := exec.Command("sh", "-c", `tar -C "$1" -cf - . | zstd -q -f -o "$2"`, "sh", v.UpperDir(), tarOut)
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("tar | zstd: %v: %s", err, o)
		}
		return time.Since(start)
	}
	ratio := func(b *testing.B, ours func() (time.Duration, int64)) {
		b.SetBytes(size)
		var mine, base time.Duration
		for i := 0; i < b.N; i++ {
			d, blobSize := ours()
			mine += d
			base += tarZstd()
			if i == 0 {
				fi, err := os.Stat(tarOut)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(blobSize)/float64(fi.Size()), "x-tar-size")
			}
		}
		b.ReportMetric(float64(mine.Milliseconds())/float64(b.N), "ms-ours")
		b.ReportMetric(float64(base.Milliseconds())/float64(b.N), "ms-tar")
		b.ReportMetric(float64(mine)/float64(base), "x-tar")
	}
	b.Run("commit", func(b *testing.B) {
		var mine, alike time.Duration
		ratio(b, func() (time.Duration, int64) {
			start := time.Now()
			res, err := s.Commit(ctx, "bench", CommitOptions{})
			if err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			mine += d
			b.StopTimer()
			if _, err := s.GC(ctx, 0, nil); err != nil { // the committed layer, unused
				b.Fatal(err)
			}
			b.StartTimer()
			// The same work by tools: the blob and an extracted copy.
			x := filepath.Join(dir, "x")
			if err := os.Mkdir(x, 0o755); err != nil {
				b.Fatal(err)
			}
			start = time.Now()
			cmd := exec.Command("bash", "-c", `tar -C "$1" -cf - . | tee >(zstd -q -f -o "$2") | tar -xf - -C "$3"`, "bash", v.UpperDir(), tarOut, x)
			if o, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("tar | tee zstd | tar -x: %v: %s", err, o)
			}
			alike += time.Since(start)
			b.StopTimer()
			if err := os.RemoveAll(x); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			return d, res.Layer.Size
		})
		b.ReportMetric(float64(mine)/float64(alike), "x-tar-x")
	})
	b.Run("pack", func(b *testing.B) {
		ratio(b, func() (time.Duration, int64) {
			start := time.Now()
			f, err := os.Create(packOut)
			if err != nil {
				b.Fatal(err)
			}
			zw, err := zstd.NewWriter(f, zstd.WithEncoderConcurrency(2))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := archive.Pack(ctx, v.UpperDir(), zw, archive.PackOptions{}); err != nil {
				b.Fatal(err)
			}
			if err := errors.Join(zw.Close(), f.Close()); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			fi, err := os.Stat(packOut)
			if err != nil {
				b.Fatal(err)
			}
			return d, fi.Size()
		})
	})
}

// TestCommitImageSourceGone: a pulled layer is fetched again from the image
// it came from; with that image gone, and no blob kept of the layer, the
// image of a commit cannot be made, and the error says which layer and
// where it was looked for.
func TestCommitImageSourceGone(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t, overlay.ModeAuto)
	dir := filepath.Join(t.TempDir(), "layout")
	testimage.WriteLayout(t, dir, "v1", commitBase(t))
	img, err := s.Pull(ctx, "oci:"+dir+":v1", source.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mountVolume(t, s, VolumeSpec{ID: "v", Layers: chainOf(img), Target: filepath.Join(t.TempDir(), "v")})
	res, err := s.Commit(ctx, "v", CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitImage(ctx, res, ImageOptions{}); err != nil {
		t.Fatalf("with the layout there: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_, err = s.CommitImage(ctx, res, ImageOptions{})
	if err == nil || !strings.Contains(err.Error(), img.Layers[0].DiffID.String()) || !strings.Contains(err.Error(), "the image it was pulled from") {
		t.Errorf("with the layout gone: %v", err)
	}
}
