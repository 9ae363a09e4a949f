package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// run reads the inputs, builds every platform's image and writes the
// archives and the layout.
func run(o Options) error {
	if o.Stage != "" {
		return stage(o)
	}
	tag, err := o.tag()
	if err != nil {
		return err
	}
	certs, err := os.ReadFile(o.CACertificates)
	if err != nil {
		return fmt.Errorf("CA certificates: %w (install ca-certificates or pass --ca-certificates)", err)
	}
	labels := Labels(o.Version, o.Revision, o.Created)
	imgs := make([]v1.Image, len(o.Binaries))
	for i, b := range o.Binaries {
		if err := checkStatic(b.Path, b.Arch); err != nil {
			return err
		}
		exe, err := os.ReadFile(b.Path)
		if err != nil {
			return fmt.Errorf("%s binary: %w", b.Platform(), err)
		}
		tools, err := toolFiles(o.Tools, b.Arch)
		if err != nil {
			return fmt.Errorf("%s: %w", b.Platform(), err)
		}
		imgs[i], err = buildImage(platformImage{Binary: b, Exe: exe, Certs: certs, Tools: tools, Labels: labels, Created: o.Created})
		if err != nil {
			return err
		}
	}
	idx, err := buildIndex(o.Binaries, imgs)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return err
	}
	for i, b := range o.Binaries {
		if err := writeArchive(filepath.Join(o.Out, b.archiveName()), tag, imgs[i]); err != nil {
			return err
		}
	}
	return writeLayout(filepath.Join(o.Out, "oci"), tag, idx)
}

// writeArchive writes img as a docker-archive tagged tag, through a temp
// file, so an interrupted run never leaves a truncated archive to import.
func writeArchive(path string, tag name.Tag, img v1.Image) error {
	tmp := path + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), removeTemp(tmp))
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(fmt.Errorf("write %s: %w", path, err), removeTemp(tmp))
	}
	return nil
}

// removeTemp removes the temporary file a failed write may have left.
func removeTemp(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// writeLayout writes an OCI image layout whose index.json names idx by its
// tag: org.opencontainers.image.ref.name for OCI tools, and the full
// reference as io.containerd.image.name, which `ctr images import` uses.
// It replaces any previous layout at dir only once the new one is complete.
func writeLayout(dir string, tag name.Tag, idx v1.ImageIndex) error {
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	err = p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.Name(),
	}))
	if err != nil {
		return errors.Join(fmt.Errorf("OCI layout %s: %w", dir, err), os.RemoveAll(tmp))
	}
	old := dir + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dir, old); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("OCI layout %s: %w", dir, err)
	}
	return os.RemoveAll(old)
}
