package main

import (
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
)

// Entrypoint is where the binary sits in the image, and the image's
// entrypoint; the Dockerfile uses the same path.
const Entrypoint = "/layerset-csi"

// certPath is where Go's crypto/x509 looks first on Linux.
const certPath = "/etc/ssl/certs/ca-certificates.crt"

// searchPath is the image's PATH: Debian's, so that a tool's bare name
// (the node plugin's --mkfs=mkfs.ext4) is found where Debian puts it. The
// Dockerfile sets the same.
const searchPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// Options says what to build and where to write it.
type Options struct {
	// Binaries are the static layerset-csi binaries, one per platform.
	Binaries []Binary
	// CACertificates is the PEM bundle copied into the image.
	CACertificates string
	// Repository and Version name the image: REPOSITORY:VERSION.
	Repository string
	Version    string
	// Revision is the source revision the binaries were built from.
	Revision string
	// Created stamps the config, the history and every file in the layer.
	Created time.Time
	// Out is the directory the archives and the layout go to.
	Out string
	// Tools are the host files shipped in a layer of their own.
	Tools Tools
	// Stage, when set, makes the run write the tools' files into this
	// directory for StageArch instead of building images: the Dockerfile
	// copies them into its image from there.
	Stage     string
	StageArch string
}

// Tools are host files the image ships for the node plugin: executables
// with the shared libraries and the loader they need, other files (their
// configuration), and symlinks.
type Tools struct {
	Executables []HostFile
	Files       []HostFile
	Links       []Link
	// Sysroot is the directory host paths and libraries are looked up in:
	// "/" is this machine; the Dockerfile mounts a Debian root of the target
	// platform.
	Sysroot string
}

// HostFile is a file at Path in the image, copied from Host below the
// sysroot.
type HostFile struct{ Path, Host string }

// Link is a symlink at Path in the image to Target.
type Link struct{ Path, Target string }

func (t Tools) empty() bool {
	return len(t.Executables) == 0 && len(t.Files) == 0 && len(t.Links) == 0
}

// Binary is the layerset-csi binary for one platform.
type Binary struct {
	OS, Arch, Variant string
	Path              string
}

// Platform is the binary's platform as OS/ARCH[/VARIANT].
func (b Binary) Platform() string {
	if b.Variant == "" {
		return b.OS + "/" + b.Arch
	}
	return b.OS + "/" + b.Arch + "/" + b.Variant
}

// archiveName is the docker-archive file of one platform.
func (b Binary) archiveName() string {
	s := "layerset-csi-" + b.OS + "-" + b.Arch
	if b.Variant != "" {
		s += "-" + b.Variant
	}
	return s + ".tar"
}

// tag checks the options and returns the image's REPOSITORY:VERSION.
func (o Options) tag() (name.Tag, error) {
	if len(o.Binaries) == 0 {
		return name.Tag{}, fmt.Errorf("no --binary given: name at least one OS/ARCH=PATH")
	}
	seen := map[string]bool{}
	for _, b := range o.Binaries {
		if seen[b.Platform()] {
			return name.Tag{}, fmt.Errorf("platform %s is given twice: one binary per platform", b.Platform())
		}
		seen[b.Platform()] = true
	}
	if o.Version == "" {
		return name.Tag{}, fmt.Errorf("no --version given: it is the image tag")
	}
	if o.Out == "" {
		return name.Tag{}, fmt.Errorf("no --out directory given")
	}
	t, err := name.NewTag(o.Repository+":"+o.Version, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image name %s:%s: %w", o.Repository, o.Version, err)
	}
	return t, nil
}
