package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// hostTools are the tools hack/image.sh ships, from this machine's
// e2fsprogs. Without it the test is skipped, but fails in CI: CI must never
// pass by testing nothing.
func hostTools(t *testing.T) Tools {
	t.Helper()
	for _, p := range []string{"/usr/sbin/mke2fs", "/sbin/mke2fs"} {
		if _, err := os.Stat(p); err == nil {
			return Tools{
				Executables: []HostFile{{"/usr/sbin/mke2fs", p}},
				Files:       []HostFile{{"/etc/mke2fs.conf", "/etc/mke2fs.conf"}},
				Links:       []Link{{"/usr/sbin/mkfs.ext4", "mke2fs"}},
				Sysroot:     "/",
			}
		}
	}
	const msg = "mke2fs is not installed (apt-get install e2fsprogs)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return Tools{}
}

// buildWithTools runs the program for this machine's platform with tools
// and returns the image the archive holds.
func buildWithTools(t *testing.T, tools Tools) (v1.Image, Options) {
	t.Helper()
	opts := testOptions(t, t.TempDir(), Binary{OS: "linux", Arch: runtime.GOARCH, Path: goBinary(t, runtime.GOARCH)})
	opts.Tools = tools
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(opts.Repository + ":" + opts.Version)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(filepath.Join(opts.Out, opts.Binaries[0].archiveName()), &tag)
	if err != nil {
		t.Fatal(err)
	}
	return img, opts
}

// lddOf asks this machine's loader, through ldd, what an executable loads:
// each library's name and path, and the loader itself. It is the oracle the
// layer is checked against.
func lddOf(t *testing.T, exe string) (libs map[string]string, loader string) {
	t.Helper()
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", exe, err)
	}
	libs = map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 4 && f[1] == "=>":
			libs[f[0]] = f[2]
		case len(f) == 2 && strings.HasPrefix(f[0], "/"):
			loader = f[0]
		}
	}
	if len(libs) == 0 || loader == "" {
		t.Fatalf("ldd %s printed no libraries or no loader:\n%s", exe, out)
	}
	return libs, loader
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestToolsLayer checks the tools layer against what the loader itself
// loads: mke2fs, each library at Debian's multiarch path with the host's
// content, the loader at the path mke2fs names, and nothing else; below the
// binary's layer, reproducibly.
func TestToolsLayer(t *testing.T) {
	tools := hostTools(t)
	img, opts := buildWithTools(t, tools)
	layers := imageLayers(t, img)
	if len(layers) != 2 {
		t.Fatalf("image has %d layers, want the tools' and the binary's", len(layers))
	}
	var top []string
	for _, e := range layers[1] {
		top = append(top, e.Name)
	}
	if want := []string{"etc/", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "layerset-csi"}; !reflect.DeepEqual(top, want) {
		t.Errorf("top layer %q, want the binary's %q", top, want)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.History) != 2 || cf.History[0].CreatedBy != toolsCreatedBy || cf.History[1].CreatedBy != createdBy {
		t.Errorf("history %+v, want the tools' layer, then the binary's", cf.History)
	}

	entries := map[string]tarEntry{}
	for _, e := range layers[0] {
		if e.Uid != 0 || e.Gid != 0 || !e.ModTime.Equal(created) {
			t.Errorf("%s: owner %d:%d, time %v; want root and %v", e.Name, e.Uid, e.Gid, e.ModTime, created)
		}
		if e.Type != tar.TypeDir {
			entries[e.Name] = e
		}
	}
	want := map[string]tarEntry{
		"usr/sbin/mke2fs":    {Type: tar.TypeReg, Mode: 0o755, Data: readFile(t, tools.Executables[0].Host)},
		"usr/sbin/mkfs.ext4": {Type: tar.TypeSymlink, Data: "mke2fs"},
		"etc/mke2fs.conf":    {Type: tar.TypeReg, Data: readFile(t, "/etc/mke2fs.conf")},
	}
	triplet, _ := debianTriplet(runtime.GOARCH)
	libs, loader := lddOf(t, tools.Executables[0].Host)
	for lib, host := range libs {
		want["lib/"+triplet+"/"+lib] = tarEntry{Type: tar.TypeReg, Data: readFile(t, host)}
	}
	// libc needs the loader by name: it is a library too, and the path
	// mke2fs names links to it, as on Debian.
	loaderLib := "lib/" + triplet + "/" + path.Base(loader)
	want[loaderLib] = tarEntry{Type: tar.TypeReg, Data: readFile(t, loader)}
	want[loader[1:]] = tarEntry{Type: tar.TypeSymlink, Data: "/" + loaderLib}
	for n, w := range want {
		e, ok := entries[n]
		if !ok {
			t.Errorf("the tools layer has no %s", n)
			continue
		}
		if e.Type != w.Type || e.Data != w.Data || w.Mode != 0 && e.Mode != w.Mode {
			t.Errorf("%s: type %c, mode %o, %d bytes; want type %c, mode %o and the host's %d bytes", n, e.Type, e.Mode, len(e.Data), w.Type, w.Mode, len(w.Data))
		}
	}
	for n := range entries {
		if _, ok := want[n]; !ok {
			t.Errorf("the tools layer has %s, which neither the tools nor the loader name", n)
		}
	}

	// The same inputs, the same image.
	again := opts
	again.Out = t.TempDir()
	if err := run(again); err != nil {
		t.Fatal(err)
	}
	name := opts.Binaries[0].archiveName()
	if !bytes.Equal([]byte(readFile(t, filepath.Join(opts.Out, name))), []byte(readFile(t, filepath.Join(again.Out, name)))) {
		t.Errorf("%s differs between two runs with the same tools", name)
	}
}

// TestToolsFromSysroot builds the tools layer from a Debian root at a
// directory, as the Dockerfile does, laid out as Debian is (merged /usr,
// an absolute link to the loader), whose libc and loader differ from this
// machine's: the layer must hold the root's, never the host's.
func TestToolsFromSysroot(t *testing.T) {
	tools := hostTools(t)
	libs, loader := lddOf(t, tools.Executables[0].Host)
	triplet, _ := debianTriplet(runtime.GOARCH)
	root := t.TempDir()
	libDir := filepath.Join(root, "usr", "lib", triplet)
	mustWrite := func(p, data string, mode os.FileMode) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	mustLink := func(target, p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	// Bytes past an ELF file's end change its content, not what it is.
	const mark = "\x00sysroot"
	for lib, host := range libs {
		mustWrite(filepath.Join(libDir, lib), readFile(t, host)+mark, 0o644)
	}
	mustWrite(filepath.Join(libDir, path.Base(loader)), readFile(t, loader)+mark, 0o755)
	mustWrite(filepath.Join(root, "usr", "sbin", "mke2fs"), readFile(t, tools.Executables[0].Host), 0o755)
	mustWrite(filepath.Join(root, "etc", "mke2fs.conf"), "# the root's\n", 0o644)
	mustLink("usr/lib", filepath.Join(root, "lib"))
	mustLink("usr/lib64", filepath.Join(root, "lib64"))
	mustLink("usr/sbin", filepath.Join(root, "sbin"))
	// Debian's /usr/lib64/ld-linux-x86-64.so.2 is an absolute link into
	// the multiarch directory: outside the root it would be the host's.
	loaderIn, err := filepath.Rel("/", loader)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, loaderIn)); errors.Is(err, fs.ErrNotExist) {
		mustLink("/lib/"+triplet+"/"+path.Base(loader), filepath.Join(root, "usr", loaderIn))
	}

	files, err := toolFiles(Tools{
		Executables: []HostFile{{"/usr/sbin/mke2fs", "/sbin/mke2fs"}},
		Files:       []HostFile{{"/etc/mke2fs.conf", "/etc/mke2fs.conf"}},
		Sysroot:     root,
	}, runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]file{}
	for _, f := range files {
		got[f.Path] = f
	}
	for lib := range libs {
		p := "/lib/" + triplet + "/" + lib
		if f, ok := got[p]; !ok || !strings.HasSuffix(string(f.Data), mark) {
			t.Errorf("%s is not the root's (%t)", p, ok)
		}
	}
	loaderLib := "/lib/" + triplet + "/" + path.Base(loader)
	if f := got[loaderLib]; !strings.HasSuffix(string(f.Data), mark) || f.Mode != 0o755 {
		t.Errorf("%s is not the root's loader, mode 0755", loaderLib)
	}
	if f := got[loader]; f.Link != loaderLib {
		t.Errorf("%s: %+v, want a link to %s", loader, f.Link, loaderLib)
	}
	if f := got["/etc/mke2fs.conf"]; string(f.Data) != "# the root's\n" {
		t.Errorf("/etc/mke2fs.conf %q, want the root's", f.Data)
	}
}

// TestShippedMkfsMakesExt4 runs the image's own mkfs.ext4, found through
// the image's PATH in a root holding nothing but the image, on a sparse
// file, and reads the result's superblock: what the node plugin's fallback
// does in its container.
func TestShippedMkfsMakesExt4(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, for chroot")
	}
	chroot, err := exec.LookPath("chroot")
	if err != nil {
		t.Fatalf("no chroot (coreutils): %v", err)
	}
	img, _ := buildWithTools(t, hostTools(t))
	root := t.TempDir()
	extractImage(t, img, root)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	const size = 64 << 20
	disk := filepath.Join(root, "volume.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(chroot, root, "mkfs.ext4", "-q", "-F", "/volume.img")
	cmd.Env = cf.Config.Env // only the image's: PATH finds mkfs.ext4
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 in the image: %v\n%s", err, out)
	}

	sb := make([]byte, 1024)
	r, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := r.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	le16 := func(off int) uint32 { return uint32(sb[off]) | uint32(sb[off+1])<<8 }
	le32 := func(off int) uint32 { return le16(off) | le16(off+2)<<16 }
	if magic := le16(0x38); magic != 0xEF53 {
		t.Fatalf("superblock magic at offset 1080 is %#x, want 0xef53: no ext2/3/4 file system", magic)
	}
	// ext2 has the magic too: ext4 has a journal and extents, which
	// mke2fs.conf's ext4 stanza gives a file system made as mkfs.ext4.
	const compatHasJournal, incompatExtents = 0x4, 0x40
	if le32(0x5C)&compatHasJournal == 0 || le32(0x60)&incompatExtents == 0 {
		t.Errorf("features compat %#x incompat %#x: want has_journal and extent, an ext4", le32(0x5C), le32(0x60))
	}
	if blocks := uint64(le32(0x04)) * (1024 << le32(0x18)); blocks != size {
		t.Errorf("file system of %d bytes, want the whole %d-byte file", blocks, size)
	}
}

// extractImage writes img's file system into dir.
func extractImage(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	for _, layer := range imageLayers(t, img) {
		for _, e := range layer {
			p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(e.Name, "/")))
			var err error
			switch e.Type {
			case tar.TypeDir:
				err = os.MkdirAll(p, os.FileMode(e.Mode))
			case tar.TypeReg:
				err = os.WriteFile(p, []byte(e.Data), os.FileMode(e.Mode))
			case tar.TypeSymlink:
				err = os.Symlink(e.Data, p)
			default:
				t.Fatalf("%s: unexpected entry type %c", e.Name, e.Type)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestToolFilesRejects(t *testing.T) {
	host := hostTools(t)
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	onlyMke2fs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(onlyMke2fs, "usr", "sbin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(onlyMke2fs, "usr", "sbin", "mke2fs"), []byte(readFile(t, host.Executables[0].Host)), 0o755); err != nil {
		t.Fatal(err)
	}
	exe := func(p, host string) Tools { return Tools{Executables: []HostFile{{p, host}}} }
	tests := []struct {
		name   string
		tools  Tools
		arch   string
		errHas string
	}{
		{"tool of another architecture", host, other,
			"not for linux/" + other + " (" + map[string]string{"amd64": "EM_X86_64", "arm64": "EM_AARCH64"}[other] +
				"): hack/image can only ship tools for the build machine's architecture; build a linux/" + other + " image with the Dockerfile"},
		{"unknown architecture", host, "mips", `tools for architecture "mips"`},
		{"missing tool", exe("/usr/sbin/mke2fs", "/nonexistent/mke2fs"), runtime.GOARCH, "tool /nonexistent/mke2fs: lstat"},
		{"tool that is no ELF file", exe("/usr/sbin/mke2fs", "/etc/mke2fs.conf"), runtime.GOARCH, "/etc/mke2fs.conf is not an ELF file"},
		{"library missing from the root", Tools{Executables: []HostFile{{"/usr/sbin/mke2fs", "/usr/sbin/mke2fs"}}, Sysroot: onlyMke2fs}, runtime.GOARCH,
			"library libext2fs.so.2, needed by /usr/sbin/mke2fs, for " + runtime.GOARCH + " is in none of /lib/"},
		{"tool in the binary's place", exe("/layerset-csi", host.Executables[0].Host), runtime.GOARCH, "/layerset-csi is the image's own"},
		{"relative image path", exe("usr/sbin/mke2fs", host.Executables[0].Host), runtime.GOARCH, "want an absolute, clean path"},
		{"one path, two contents", Tools{Files: []HostFile{{"/etc/x", "/etc/mke2fs.conf"}, {"/etc/x", host.Executables[0].Host}}},
			runtime.GOARCH, "/etc/x is given twice, with different content"},
		{"link without target", Tools{Links: []Link{{"/usr/sbin/mkfs.ext4", ""}}}, runtime.GOARCH, "has no target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := toolFiles(tt.tools, tt.arch)
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("error %v, want one containing %q", err, tt.errHas)
			}
		})
	}

	// The whole run stops, writing nothing, naming the platform.
	opts := testOptions(t, filepath.Join(t.TempDir(), "out"), Binary{OS: "linux", Arch: other, Path: goBinary(t, other)})
	opts.Tools = host
	if err := run(opts); err == nil || !strings.Contains(err.Error(), "linux/"+other+": tool ") {
		t.Errorf("run with tools for another platform: %v, want an error naming linux/%s", err, other)
	}
	if _, err := os.Stat(opts.Out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a rejected run wrote %s", opts.Out)
	}
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "usr", "lib", "x86_64-linux-gnu")
	if err := os.MkdirAll(lib, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lib, "libc.so.6"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for p, target := range map[string]string{
		"lib":                         "usr/lib",
		"usr/lib64":                   "lib",
		"usr/lib/ld.so":               "/lib/x86_64-linux-gnu/libc.so.6",
		"usr/lib/x86_64-linux-gnu/up": "../../../../../..",
		"loop":                        "loop",
	} {
		if err := os.Symlink(target, filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	libc := filepath.Join(lib, "libc.so.6")
	tests := []struct {
		path, want, errHas string
	}{
		{path: "/usr/lib/x86_64-linux-gnu/libc.so.6", want: libc},
		{path: "/lib/x86_64-linux-gnu/libc.so.6", want: libc},
		{path: "/usr/lib64/ld.so", want: libc}, // relative, then absolute: inside the root
		{path: "/lib/./x86_64-linux-gnu/../x86_64-linux-gnu/libc.so.6", want: libc},
		{path: "/lib/x86_64-linux-gnu/up/lib/ld.so", want: libc}, // .. stops at the root
		{path: "/", want: root},
		{path: "/loop", errHas: "more than 40 symlinks"},
		{path: "/lib/missing.so", errHas: "no such file"},
		{path: "lib/x86_64-linux-gnu/libc.so.6", errHas: "want an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := resolveIn(root, tt.path)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("resolveIn: %q, %v; want an error containing %q", got, err, tt.errHas)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolveIn: %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestStageMatchesImage: the directory the Dockerfile copies is the tools
// layer hack/image.sh's image has, entry for entry.
func TestStageMatchesImage(t *testing.T) {
	tools := hostTools(t)
	img, _ := buildWithTools(t, tools)
	var want []string
	for _, e := range imageLayers(t, img)[0] {
		want = append(want, describe(e.Name, e.Type, e.Mode, e.Data))
		if e.Type != tar.TypeSymlink && !e.ModTime.Equal(created) {
			t.Errorf("layer %s time %v, want %v", e.Name, e.ModTime, created)
		}
	}
	dir := filepath.Join(t.TempDir(), "tools")
	opts := Options{Tools: tools, Stage: dir, StageArch: runtime.GOARCH, Created: created}
	if err := run(opts); err != nil {
		t.Fatal(err)
	}
	var got []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+"/"))
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			got = append(got, describe(rel+"/", tar.TypeDir, int64(fi.Mode().Perm()), ""))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got = append(got, describe(rel, tar.TypeSymlink, 0o777, target))
			return nil
		default:
			got = append(got, describe(rel, tar.TypeReg, int64(fi.Mode().Perm()), readFile(t, p)))
		}
		if !fi.ModTime().Equal(created) {
			t.Errorf("staged %s time %v, want %v", rel, fi.ModTime(), created)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("staged\n  %s\nthe image's tools layer\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	for _, tt := range []struct {
		name   string
		edit   func(*Options)
		errHas string
	}{
		{"directory exists", func(o *Options) { o.Stage = t.TempDir() }, "it must not exist yet"},
		{"with a binary", func(o *Options) { o.Binaries = []Binary{{OS: "linux", Arch: "amd64", Path: "/x"}} }, "give no --binary"},
		{"no arch", func(o *Options) { o.StageArch = "" }, "--stage needs --arch"},
		{"no tools", func(o *Options) { o.Tools = Tools{} }, "nothing to write"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := opts
			o.Stage = filepath.Join(t.TempDir(), "tools")
			tt.edit(&o)
			if err := run(o); err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("run: %v, want an error containing %q", err, tt.errHas)
			}
		})
	}
}

// describe is one entry as the stage and the layer comparison see it.
func describe(name string, typ byte, mode int64, data string) string {
	if typ == tar.TypeSymlink {
		return name + " -> " + data
	}
	return fmt.Sprintf("%s %c %v sha256:%x", name, typ, os.FileMode(mode), sha256.Sum256([]byte(data)))
}
