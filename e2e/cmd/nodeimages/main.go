// Command nodeimages writes the images an e2e node needs before it can run
// any pod, as docker-archives for `ctr images import`: the pod sandbox
// (e2e/cmd/pause) and a busybox userland for test pods, from Debian's
// busybox-static. No registry or Docker engine is involved, and the same
// inputs always give the same digests.
//
//	nodeimages -out DIR -pause PAUSE_BINARY -pause-ref REF \
//	    -busybox BUSYBOX_BINARY -busybox-ref REF -applets sh,ls,cat,...
package main

import (
	"archive/tar"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerset/layerset-csi/internal/testimage"
)

// options are the command's flags.
type options struct {
	out                 string
	pause, pauseRef     string
	busybox, busyboxRef string
	applets             string
}

func main() {
	var o options
	flag.StringVar(&o.out, "out", "", "directory to write pause.tar and busybox.tar to")
	flag.StringVar(&o.pause, "pause", "", "static pause binary")
	flag.StringVar(&o.pauseRef, "pause-ref", "localhost/e2e/pause:1", "reference of the sandbox image")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "static busybox binary")
	flag.StringVar(&o.busyboxRef, "busybox-ref", "localhost/e2e/busybox:1", "reference of the busybox image")
	flag.StringVar(&o.applets, "applets", "", "comma-separated busybox applets linked in /bin, e.g. $(busybox --list | paste -sd,)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "nodeimages:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.out == "" || o.pause == "" || o.busybox == "" || o.applets == "" {
		return errors.New("-out, -pause, -busybox and -applets are required")
	}
	pause, err := binaryImage(o.pause, "pause", nil, v1.Config{Entrypoint: []string{"/pause"}})
	if err != nil {
		return err
	}
	var links []testimage.Entry
	for _, a := range strings.Split(o.applets, ",") {
		if a = strings.TrimSpace(a); a != "" && a != "busybox" {
			links = append(links, testimage.Symlink("bin/"+a, "busybox"))
		}
	}
	busybox, err := binaryImage(o.busybox, "bin/busybox", links, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	for _, w := range []struct {
		file, ref string
		img       v1.Image
	}{{"pause.tar", o.pauseRef, pause}, {"busybox.tar", o.busyboxRef, busybox}} {
		if err := writeArchive(filepath.Join(o.out, w.file), w.ref, w.img); err != nil {
			return err
		}
	}
	return nil
}

// binaryImage is a one-layer image holding the static binary bin at path,
// the directories a container runtime mounts over, and extra entries.
func binaryImage(bin, path string, extra []testimage.Entry, cfg v1.Config) (v1.Image, error) {
	body, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading the binary for /%s: %w", path, err)
	}
	entries := []testimage.Entry{
		testimage.Dir("bin"), testimage.Dir("dev"), testimage.Dir("etc"), testimage.Dir("proc"),
		testimage.Dir("root"), testimage.Dir("sys"), testimage.Dir("var"), testimage.Dir("var/run"),
		{Name: "tmp", Type: tar.TypeDir, Mode: 0o1777},
		testimage.File("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
		testimage.File("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
		{Name: path, Type: tar.TypeReg, Mode: 0o755, Body: string(body)},
	}
	layer, err := testimage.Layer(append(entries, extra...), testimage.Gzip)
	if err != nil {
		return nil, fmt.Errorf("layer of /%s: %w", path, err)
	}
	img, err := testimage.Image(layer)
	if err != nil {
		return nil, err
	}
	return mutate.Config(img, cfg)
}

// writeArchive writes img tagged ref as a docker-archive, through a
// temporary file so a reader never sees half an archive.
func writeArchive(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	tmp := file + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		err = fmt.Errorf("writing %s: %w", file, err)
		if rerr := os.Remove(tmp); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		return err
	}
	return os.Rename(tmp, file)
}
