package testimage

import (
	"errors"
	"io/fs"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// RefNameAnnotation names a manifest in an OCI layout's index.json.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayoutDir adds img to the OCI image layout at dir, creating the
// layout if needed, and names it tag (no name when tag is empty). Adding to
// an existing layout lets one directory hold several tagged images.
func WriteLayoutDir(dir, tag string, img v1.Image) error {
	p, err := openLayout(dir)
	if err != nil {
		return err
	}
	return p.AppendImage(img, tagOption(tag)...)
}

// WriteLayoutIndexDir is WriteLayoutDir for a multi-platform index.
func WriteLayoutIndexDir(dir, tag string, idx v1.ImageIndex) error {
	p, err := openLayout(dir)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, tagOption(tag)...)
}

// WriteLayout is WriteLayoutDir failing t on error.
func WriteLayout(t testing.TB, dir, tag string, img v1.Image) {
	t.Helper()
	if err := WriteLayoutDir(dir, tag, img); err != nil {
		t.Fatalf("writing OCI layout %s: %v", dir, err)
	}
}

// WriteLayoutIndex is WriteLayoutIndexDir failing t on error.
func WriteLayoutIndex(t testing.TB, dir, tag string, idx v1.ImageIndex) {
	t.Helper()
	if err := WriteLayoutIndexDir(dir, tag, idx); err != nil {
		t.Fatalf("writing OCI layout %s: %v", dir, err)
	}
}

func openLayout(dir string) (layout.Path, error) {
	p, err := layout.FromPath(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return layout.Write(dir, empty.Index)
	}
	return p, err
}

func tagOption(tag string) []layout.Option {
	if tag == "" {
		return nil
	}
	return []layout.Option{layout.WithAnnotations(map[string]string{RefNameAnnotation: tag})}
}
