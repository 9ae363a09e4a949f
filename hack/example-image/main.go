// Command example-image writes the quick start's example image as an OCI
// image layout: a "toolchain" image and an "app" image that builds on it,
// with a whiteout, an opaque directory, a hardlink and a symlink, so the
// merged view shows every overlay rule at work.
package main

import (
	"flag"
	"fmt"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
)

func main() {
	out := flag.String("out", "", "directory to write the OCI image layout to")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: example-image --out DIR")
		os.Exit(2)
	}
	if err := write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "example-image:", err)
		os.Exit(1)
	}
}

func write(dir string) error {
	toolchain, err := image(
		[]testimage.Entry{
			testimage.Dir("opt/toolchain/bin"),
			testimage.File("opt/toolchain/bin/cc", "#!/bin/sh\necho 'cc 1.0 from the toolchain layer'\n"),
			testimage.Hardlink("opt/toolchain/bin/c99", "opt/toolchain/bin/cc"),
			testimage.File("opt/toolchain/VERSION", "1.0\n"),
			testimage.File("opt/toolchain/doc/README", "toolchain documentation\n"),
		},
		[]testimage.Entry{
			testimage.File("opt/toolchain/VERSION", "1.1\n"),
			testimage.Symlink("opt/toolchain/current", "bin"),
		},
	)
	if err != nil {
		return err
	}
	app, err := image(
		[]testimage.Entry{
			testimage.File("srv/app/index.html", "<h1>hello from the app layer</h1>\n"),
			testimage.Whiteout("opt/toolchain/doc/README"), // the app ships without docs
		},
		[]testimage.Entry{
			testimage.Opaque("srv/app"), // replaces the directory wholesale
			testimage.File("srv/app/index.html", "<h1>app v2</h1>\n"),
		},
	)
	if err != nil {
		return err
	}
	if err := testimage.WriteLayoutDir(dir, "toolchain", toolchain); err != nil {
		return err
	}
	return testimage.WriteLayoutDir(dir, "app", app)
}

func image(layers ...[]testimage.Entry) (v1.Image, error) {
	var ls []v1.Layer
	for _, entries := range layers {
		l, err := testimage.Layer(entries, testimage.Gzip)
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	return testimage.Image(ls...)
}
