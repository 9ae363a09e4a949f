package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

var sample = []Entry{
	Dir("etc"),
	File("etc/hosts", "127.0.0.1 localhost\n"),
	{Name: "etc/secret", Type: tar.TypeReg, Body: "s", Mode: 0o600, Uid: 1000, Gid: 1000,
		ModTime: time.Unix(1700000000, 0), Xattrs: map[string]string{"user.k": "v"}},
	Symlink("etc/link", "hosts"),
	Hardlink("etc/hard", "etc/hosts"),
	Whiteout("usr/lib/gone"),
	Opaque("var/cache"),
}

func TestLayerCompressions(t *testing.T) {
	want, err := Tar(sample)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c          Compression
		mediaType  types.MediaType
		decompress func(io.Reader) (io.Reader, error)
	}{
		{Gzip, types.OCILayer, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{Zstd, types.OCILayerZStd, func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) }},
		{None, types.OCIUncompressedLayer, func(r io.Reader) (io.Reader, error) { return r, nil }},
	} {
		t.Run(tc.c.String(), func(t *testing.T) {
			l, err := Layer(sample, tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if mt, _ := l.MediaType(); mt != tc.mediaType {
				t.Errorf("media type %s, want %s", mt, tc.mediaType)
			}
			rc, _ := l.Compressed()
			blob, _ := io.ReadAll(rc)
			if d, _ := l.Digest(); d != sha(blob) {
				t.Errorf("digest %s does not hash the blob (%s)", d, sha(blob))
			}
			if n, _ := l.Size(); n != int64(len(blob)) {
				t.Errorf("size %d, blob is %d bytes", n, len(blob))
			}
			r, err := tc.decompress(bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Error("decompressed blob differs from Tar(entries)")
			}
			if d, _ := l.DiffID(); d != sha(want) {
				t.Errorf("diffID %s, want %s", d, sha(want))
			}
			again, _ := Layer(sample, tc.c)
			d1, _ := l.Digest()
			d2, _ := again.Digest()
			if d1 != d2 {
				t.Errorf("same entries gave digests %s and %s", d1, d2)
			}
		})
	}
}

func TestTarHeaders(t *testing.T) {
	raw, err := Tar(sample)
	if err != nil {
		t.Fatal(err)
	}
	type hdr struct {
		name     string
		typ      byte
		mode     int64
		link     string
		uid      int
		mtime    time.Time
		xattrVal string
	}
	want := []hdr{
		{"etc/", tar.TypeDir, 0o755, "", 0, DefaultModTime, ""},
		{"etc/hosts", tar.TypeReg, 0o644, "", 0, DefaultModTime, ""},
		{"etc/secret", tar.TypeReg, 0o600, "", 1000, time.Unix(1700000000, 0), "v"},
		{"etc/link", tar.TypeSymlink, 0o777, "hosts", 0, DefaultModTime, ""},
		{"etc/hard", tar.TypeLink, 0o644, "etc/hosts", 0, DefaultModTime, ""},
		{"usr/lib/.wh.gone", tar.TypeReg, 0o644, "", 0, DefaultModTime, ""},
		{"var/cache/.wh..wh..opq", tar.TypeReg, 0o644, "", 0, DefaultModTime, ""},
	}
	tr := tar.NewReader(bytes.NewReader(raw))
	for i, w := range want {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		got := hdr{h.Name, h.Typeflag, h.Mode, h.Linkname, h.Uid, h.ModTime.UTC(), h.PAXRecords["SCHILY.xattr.user.k"]}
		w.mtime = w.mtime.UTC()
		if got != w {
			t.Errorf("entry %d: got %+v, want %+v", i, got, w)
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("extra entries after %d: %v", len(want), err)
	}
}

func TestTarRejectsBodyOnNonFile(t *testing.T) {
	if _, err := Tar([]Entry{{Name: "d", Type: tar.TypeDir, Body: "x"}}); err == nil {
		t.Fatal("directory with a body was accepted")
	}
}

func mustImage(t *testing.T, entries ...[]Entry) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, e := range entries {
		l, err := Layer(e, Gzip)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := Image(ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageConfigListsDiffIDs(t *testing.T) {
	a, _ := Layer([]Entry{File("a", "1")}, Gzip)
	b, _ := Layer([]Entry{File("b", "2")}, Zstd)
	img, err := Image(a, b)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s config %s, want OCI types", m.MediaType, m.Config.MediaType)
	}
	for i, l := range []v1.Layer{a, b} {
		d, _ := l.Digest()
		diffID, _ := l.DiffID()
		mt, _ := l.MediaType()
		if m.Layers[i].Digest != d || m.Layers[i].MediaType != mt || cfg.RootFS.DiffIDs[i] != diffID {
			t.Errorf("layer %d: manifest %+v, diff_id %s; want digest %s type %s diff_id %s",
				i, m.Layers[i], cfg.RootFS.DiffIDs[i], d, mt, diffID)
		}
	}
}

func TestIndexIsSortedAndDeterministic(t *testing.T) {
	imgs := map[string]v1.Image{
		"linux/arm64/v8": mustImage(t, []Entry{File("arch", "arm64")}),
		"linux/amd64":    mustImage(t, []Entry{File("arch", "amd64")}),
	}
	idx, err := Index(imgs)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 2 || im.Manifests[0].Platform.String() != "linux/amd64" ||
		im.Manifests[1].Platform.String() != "linux/arm64/v8" {
		t.Fatalf("manifests %+v, want linux/amd64 then linux/arm64/v8", im.Manifests)
	}
	again, _ := Index(imgs)
	d1, _ := idx.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("same images gave index digests %s and %s", d1, d2)
	}
}

func TestRegistryPushPull(t *testing.T) {
	reg := NewRegistry(t)
	img := mustImage(t, []Entry{File("x", "y")})
	pinned := reg.Push(t, "app:v1", img)
	want, _ := img.Digest()
	if pinned != reg.Host+"/app@"+want.String() {
		t.Fatalf("pinned %q, want %s/app@%s", pinned, reg.Host, want)
	}
	ref, _ := name.ParseReference(reg.Host+"/app:v1", name.Insecure)
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled %s, pushed %s", d, want)
	}
}

func TestRegistryBasicAuth(t *testing.T) {
	reg := NewRegistry(t, WithBasicAuth("u", "p"))
	img := mustImage(t, []Entry{File("x", "y")})
	reg.Push(t, "app:v1", img)
	ref, _ := name.ParseReference(reg.Host+"/app:v1", name.Insecure)

	_, err := remote.Image(ref)
	var te *transport.Error
	if !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous pull: %v, want 401", err)
	}
	if _, err := remote.Image(ref, remote.WithAuth(&authn.Basic{Username: "u", Password: "p"})); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
}

func TestWriteLayoutTags(t *testing.T) {
	dir := t.TempDir()
	a := mustImage(t, []Entry{File("a", "1")})
	b := mustImage(t, []Entry{File("b", "2")})
	WriteLayout(t, dir, "a", a)
	WriteLayout(t, dir, "b", b)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]v1.Image{"a": a, "b": b}
	if len(im.Manifests) != len(want) {
		t.Fatalf("%d manifests, want %d", len(im.Manifests), len(want))
	}
	for _, d := range im.Manifests {
		img := want[d.Annotations[RefNameAnnotation]]
		if img == nil {
			t.Fatalf("unexpected ref name %q", d.Annotations[RefNameAnnotation])
		}
		if wd, _ := img.Digest(); wd != d.Digest {
			t.Errorf("tag %s: digest %s, want %s", d.Annotations[RefNameAnnotation], d.Digest, wd)
		}
		// The blobs must be there, not just the index entry.
		got, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := got.Layers()
		rc, err := ls[0].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Error(err)
		}
	}
}
