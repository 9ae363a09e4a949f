package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// created is the fixed creation time the tests build with.
const createdUnix = 1772366400 // 2026-03-01T12:00:00Z

var created = time.Unix(createdUnix, 0).UTC()

// goBinary builds a tiny static program for linux/arch, a real stand-in for
// layerset-csi that the ELF check must accept.
func goBinary(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\""+arch+"\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "layerset-csi")
	cmd := exec.Command("go", "build", "-o", out, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", arch, err, b)
	}
	return out
}

func certFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func testOptions(t *testing.T, out string, bins ...Binary) Options {
	return Options{
		Binaries:       bins,
		CACertificates: certFile(t),
		Repository:     "ghcr.io/layerset/layerset-csi",
		Version:        "v1.2.3",
		Revision:       "0123456789abcdef",
		Created:        created,
		Out:            out,
	}
}

type tarEntry struct {
	Name     string
	Type     byte
	Mode     int64
	Uid, Gid int
	ModTime  time.Time
	Data     string // a symlink's target
}

// imageLayers returns the entries of each of img's layers, bottom first.
func imageLayers(t *testing.T, img v1.Image) [][]tarEntry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]tarEntry, len(layers))
	for i, l := range layers {
		out[i] = layerEntries(t, l)
	}
	return out
}

func layerEntries(t *testing.T, l v1.Layer) []tarEntry {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := rc.Close(); err != nil {
			t.Error(err)
		}
	}()
	var out []tarEntry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeSymlink {
			data = []byte(h.Linkname)
		}
		out = append(out, tarEntry{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime.UTC(), string(data)})
	}
}

func TestRunWritesLoadableImages(t *testing.T) {
	amd64, arm64 := goBinary(t, "amd64"), goBinary(t, "arm64")
	out := t.TempDir()
	bins := []Binary{{OS: "linux", Arch: "amd64", Path: amd64}, {OS: "linux", Arch: "arm64", Variant: "v8", Path: arm64}}
	opts := testOptions(t, out, bins...)
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("ghcr.io/layerset/layerset-csi:v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := os.ReadFile(opts.CACertificates)
	if err != nil {
		t.Fatal(err)
	}

	archived := map[string]v1.Hash{}
	for _, b := range bins {
		t.Run(b.Platform(), func(t *testing.T) {
			img, err := tarball.ImageFromPath(filepath.Join(out, b.archiveName()), &tag)
			if err != nil {
				t.Fatalf("the docker-archive does not load: %v", err)
			}
			checkDigests(t, img)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != b.OS || cf.Architecture != b.Arch || cf.Variant != b.Variant {
				t.Errorf("config platform %s/%s/%s, want %s", cf.OS, cf.Architecture, cf.Variant, b.Platform())
			}
			if !reflect.DeepEqual(cf.Config.Entrypoint, []string{"/layerset-csi"}) {
				t.Errorf("entrypoint %q, want [/layerset-csi]", cf.Config.Entrypoint)
			}
			if cf.Config.User != "" {
				t.Errorf("user %q, want none: the node plugin runs as root, the chart sets the controller's", cf.Config.User)
			}
			if !cf.Created.Equal(created) {
				t.Errorf("created %v, want %v", cf.Created.Time, created)
			}
			wantLabels := map[string]string{
				"org.opencontainers.image.title":       "layerset-csi",
				"org.opencontainers.image.description": Labels("", "", created)["org.opencontainers.image.description"],
				"org.opencontainers.image.source":      "https://github.com/layerset/layerset-csi",
				"org.opencontainers.image.url":         "https://github.com/layerset/layerset-csi",
				"org.opencontainers.image.version":     "v1.2.3",
				"org.opencontainers.image.revision":    "0123456789abcdef",
				"org.opencontainers.image.created":     "2026-03-01T12:00:00Z",
			}
			if !reflect.DeepEqual(cf.Config.Labels, wantLabels) {
				t.Errorf("labels\n%v\nwant\n%v", cf.Config.Labels, wantLabels)
			}
			exe, err := os.ReadFile(b.Path)
			if err != nil {
				t.Fatal(err)
			}
			want := []tarEntry{
				{"etc/", tar.TypeDir, 0o755, 0, 0, created, ""},
				{"etc/ssl/", tar.TypeDir, 0o755, 0, 0, created, ""},
				{"etc/ssl/certs/", tar.TypeDir, 0o755, 0, 0, created, ""},
				{"etc/ssl/certs/ca-certificates.crt", tar.TypeReg, 0o644, 0, 0, created, string(certs)},
				{"layerset-csi", tar.TypeReg, 0o755, 0, 0, created, string(exe)},
			}
			if !reflect.DeepEqual(cf.Config.Env, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}) {
				t.Errorf("env %q, want Debian's PATH alone", cf.Config.Env)
			}
			layers := imageLayers(t, img)
			if len(layers) != 1 {
				t.Fatalf("image without tools has %d layers, want 1", len(layers))
			}
			if got := layers[0]; !reflect.DeepEqual(got, want) {
				t.Errorf("layer entries:\n%+v\nwant\n%+v", summary(got), summary(want))
			}
			// A docker-archive keeps the config and the layers, not the
			// manifest: the config digest (the image ID) is what must match.
			id, err := img.ConfigName()
			if err != nil {
				t.Fatal(err)
			}
			archived[b.Platform()] = id
		})
	}

	p, err := layout.FromPath(filepath.Join(out, "oci"))
	if err != nil {
		t.Fatalf("OCI layout: %v", err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1", len(im.Manifests))
	}
	ref := im.Manifests[0]
	if ref.MediaType != types.OCIImageIndex ||
		ref.Annotations["org.opencontainers.image.ref.name"] != "v1.2.3" ||
		ref.Annotations["io.containerd.image.name"] != "ghcr.io/layerset/layerset-csi:v1.2.3" {
		t.Errorf("index.json entry %+v: want an OCI index named v1.2.3 and ghcr.io/layerset/layerset-csi:v1.2.3", ref)
	}
	idx, err := top.ImageIndex(ref.Digest)
	if err != nil {
		t.Fatal(err)
	}
	ii, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	inLayout := map[string]v1.Hash{}
	for _, m := range ii.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		checkDigests(t, img)
		checkOCIMediaTypes(t, img)
		id, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		inLayout[m.Platform.OS+"/"+m.Platform.Architecture+variant(m.Platform.Variant)] = id
	}
	if !reflect.DeepEqual(inLayout, archived) {
		t.Errorf("layout platforms and image IDs %v, want the archives' %v", inLayout, archived)
	}
}

// checkDigests recomputes what a runtime verifies on import: the layer's
// blob digest and diff ID, and the config's list of diff IDs.
func checkDigests(t *testing.T, img v1.Image) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		t.Fatalf("config lists %d diff IDs for %d layers", len(cf.RootFS.DiffIDs), len(layers))
	}
	for i, l := range layers {
		for _, c := range []struct {
			what   string
			open   func() (io.ReadCloser, error)
			digest func() (v1.Hash, error)
		}{{"blob", l.Compressed, l.Digest}, {"diff ID", l.Uncompressed, l.DiffID}} {
			rc, err := c.open()
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := v1.SHA256(rc)
			if cerr := rc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			want, err := c.digest()
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("layer %d %s: content hashes to %s, descriptor says %s", i, c.what, got, want)
			}
		}
		if d, _ := l.DiffID(); d != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d diff ID %s, config says %s", i, d, cf.RootFS.DiffIDs[i])
		}
	}
}

// checkOCIMediaTypes fails unless the manifest, config and layers all use
// OCI media types, which the layout keeps (a docker-archive cannot).
func checkOCIMediaTypes(t *testing.T, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON {
		t.Errorf("manifest %s with config %s, want %s with %s", m.MediaType, m.Config.MediaType, types.OCIManifestSchema1, types.OCIConfigJSON)
	}
	for i, l := range m.Layers {
		if l.MediaType != types.OCILayer {
			t.Errorf("layer %d media type %s, want %s", i, l.MediaType, types.OCILayer)
		}
	}
}

func variant(v string) string {
	if v == "" {
		return ""
	}
	return "/" + v
}

func summary(es []tarEntry) []string {
	var s []string
	for _, e := range es {
		s = append(s, strings.Join([]string{e.Name, string(rune(e.Type)), os.FileMode(e.Mode).String(), e.ModTime.String()}, " "))
	}
	return s
}

func TestRunIsReproducible(t *testing.T) {
	bin := goBinary(t, "amd64")
	a, b := t.TempDir(), t.TempDir()
	opts := testOptions(t, a, Binary{OS: "linux", Arch: "amd64", Path: bin})
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	opts.Out = b
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"layerset-csi-linux-amd64.tar", "oci/index.json"} {
		x, err := os.ReadFile(filepath.Join(a, f))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same inputs", f)
		}
	}
	// A rerun into the same directory replaces the layout instead of adding
	// a second entry to it.
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(filepath.Join(b, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	top, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Errorf("after a rerun index.json has %d entries, want 1", len(im.Manifests))
	}
	if left, _ := filepath.Glob(filepath.Join(b, "*.tmp")); len(left) > 0 {
		t.Errorf("temp files left behind: %v", left)
	}
}

func TestRunRejects(t *testing.T) {
	amd64 := goBinary(t, "amd64")
	dynamic, err := exec.LookPath("ls") // the host's, linked against libc
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		edit   func(*Options)
		errHas string
	}{
		{"no binary", func(o *Options) { o.Binaries = nil }, "no --binary"},
		{"same platform twice", func(o *Options) {
			o.Binaries = append(o.Binaries, o.Binaries[0])
		}, "linux/amd64 is given twice"},
		{"no version", func(o *Options) { o.Version = "" }, "no --version"},
		{"tag with a plus", func(o *Options) { o.Version = "v1.0+build" }, "image name ghcr.io/layerset/layerset-csi:v1.0+build"},
		{"binary for another arch", func(o *Options) { o.Binaries[0].Arch = "arm64" }, "not for arm64"},
		{"unknown arch", func(o *Options) { o.Binaries[0].Arch = "mips" }, `architecture "mips"`},
		{"not an ELF file", func(o *Options) { o.Binaries[0].Path = o.CACertificates }, "is not an ELF executable"},
		{"dynamically linked", func(o *Options) { o.Binaries[0].Path = dynamic }, "CGO_ENABLED=0"},
		{"missing certificates", func(o *Options) { o.CACertificates = "/nonexistent/ca.crt" }, "--ca-certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out")
			opts := testOptions(t, out, Binary{OS: "linux", Arch: "amd64", Path: amd64})
			tt.edit(&opts)
			err := run(opts)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("run: %v, want an error containing %q", err, tt.errHas)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("a rejected run wrote %s", out)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args   []string
		want   Options
		errHas string
	}{
		{
			args: []string{"--binary", "linux/amd64=/b/amd64", "--binary=linux/arm/v7=/b/arm", "--version", "v1", "--created", "1700000000"},
			want: Options{
				Binaries:       []Binary{{OS: "linux", Arch: "amd64", Path: "/b/amd64"}, {OS: "linux", Arch: "arm", Variant: "v7", Path: "/b/arm"}},
				CACertificates: "/etc/ssl/certs/ca-certificates.crt",
				Repository:     "ghcr.io/layerset/layerset-csi",
				Version:        "v1",
				Created:        time.Unix(1700000000, 0).UTC(),
				Out:            "_output/image",
				Tools:          Tools{Sysroot: "/"},
			},
		},
		{
			args: []string{"--tool", "/usr/sbin/mke2fs=/sbin/mke2fs", "--tool=/usr/bin/x", "--tool-file", "/etc/mke2fs.conf",
				"--tool-link", "/usr/sbin/mkfs.ext4=mke2fs", "--sysroot", "/sysroot", "--stage", "/out/tools", "--arch", "arm64"},
			want: Options{
				CACertificates: "/etc/ssl/certs/ca-certificates.crt",
				Repository:     "ghcr.io/layerset/layerset-csi",
				Created:        time.Unix(0, 0).UTC(),
				Out:            "_output/image",
				Tools: Tools{
					Executables: []HostFile{{"/usr/sbin/mke2fs", "/sbin/mke2fs"}, {"/usr/bin/x", "/usr/bin/x"}},
					Files:       []HostFile{{"/etc/mke2fs.conf", "/etc/mke2fs.conf"}},
					Links:       []Link{{"/usr/sbin/mkfs.ext4", "mke2fs"}},
					Sysroot:     "/sysroot",
				},
				Stage:     "/out/tools",
				StageArch: "arm64",
			},
		},
		{args: []string{"--tool", "=/sbin/mke2fs"}, errHas: "want PATH[=HOST_PATH]"},
		{args: []string{"--tool-file", "/etc/x="}, errHas: "want PATH[=HOST_PATH]"},
		{args: []string{"--tool-link", "/usr/sbin/mkfs.ext4"}, errHas: "want PATH=TARGET"},
		{args: []string{"--binary", "linux=/b"}, errHas: `platform "linux" is not OS/ARCH`},
		{args: []string{"--binary", "linux/amd64"}, errHas: "want OS/ARCH[/VARIANT]=PATH"},
		{args: []string{"--binary", "linux/amd64="}, errHas: "want OS/ARCH[/VARIANT]=PATH"},
		{args: []string{"--binary", "linux/arm/v7/x=/b"}, errHas: "is not OS/ARCH"},
		{args: []string{"--created", "yesterday"}, errHas: "want Unix seconds"},
		{args: []string{"--created", "-5"}, errHas: "want Unix seconds"},
		{args: []string{"extra"}, errHas: "every input is a flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			got, err := parseFlags(tt.args, io.Discard)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("error %v, want one containing %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestRootfsTar(t *testing.T) {
	tests := []struct {
		name   string
		files  []file
		want   []string
		errHas string
	}{
		{"parents first, once, sorted", []file{{Path: "/b/c/d", Mode: 0o600}, {Path: "/a"}, {Path: "/b/c/e"}},
			[]string{"a", "b/", "b/c/", "b/c/d", "b/c/e"}, ""},
		{"relative path", []file{{Path: "etc/x"}}, nil, "want an absolute, clean path"},
		{"unclean path", []file{{Path: "/etc/../x"}}, nil, "want an absolute, clean path"},
		{"root", []file{{Path: "/"}}, nil, "want an absolute, clean path"},
		{"twice", []file{{Path: "/x"}, {Path: "/x"}}, nil, `"/x" is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := rootfsTar(tt.files, created)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("error %v, want one containing %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			tr := tar.NewReader(bytes.NewReader(b))
			for {
				h, err := tr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				names = append(names, h.Name)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("entries %q, want %q", names, tt.want)
			}
		})
	}
}
