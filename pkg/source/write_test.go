package source

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"

	"github.com/layerset/layerset-csi/internal/testimage"
)

func TestDestinationWritesWhatResolveReads(t *testing.T) {
	img := image(t, layer(t, testimage.Zstd, testimage.File("a", "1")))
	reg := testimage.NewRegistry(t)
	dir := filepath.Join(t.TempDir(), "new-layout")
	for _, ref := range []string{"oci:" + dir + ":v1", reg.Host + "/team/app:v1"} {
		d, err := ParseDestination(ref, opts(reg))
		if err != nil {
			t.Fatal(err)
		}
		pinned, err := d.Write(context.Background(), img)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if want := "@" + digestOf(t, img).String(); !strings.HasSuffix(pinned, want) {
			t.Errorf("%s: wrote %s, want a reference ending %s", ref, pinned, want)
		}
		for _, back := range []string{ref, pinned} {
			got, err := Resolve(context.Background(), back, opts(reg))
			if err != nil {
				t.Fatalf("resolving %s back: %v", back, err)
			}
			if got.Digest != digestOf(t, img) {
				t.Errorf("%s resolves to %s, want %s", back, got.Digest, digestOf(t, img))
			}
		}
	}
	// A second write moves the layout's tag rather than adding a second one.
	d, err := ParseDestination("oci:"+dir+":v1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(context.Background(), empty.Image); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), "oci:"+dir+":v1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, empty.Image) {
		t.Errorf("v1 resolves to %s after it was moved to %s", got.Digest, digestOf(t, empty.Image))
	}
}

func TestDestinationRefusals(t *testing.T) {
	notLayout := t.TempDir()
	if err := os.WriteFile(filepath.Join(notLayout, "something"), []byte("else"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := ParseDestination("oci:"+notLayout+":t", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Write(context.Background(), empty.Image); err == nil || !strings.Contains(err.Error(), "is not an OCI image layout") {
		t.Errorf("writing into a directory that is not a layout: %v", err)
	}
	for _, ref := range []string{"oci:/tmp/x", "oci:rel/dir:tag", "busybox", "r.example/app@sha256:" + strings.Repeat("a", 64)} {
		if _, err := ParseDestination(ref, Options{}); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("%s: %v, want ErrInvalidReference", ref, err)
		}
	}
	d, err = ParseDestination("registry.example:5000/team/app:v2", Options{Insecure: []string{"registry.example:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	if tag, ok := d.ref.remote.(name.Tag); !ok || tag.Scheme() != "http" || d.String() != "registry.example:5000/team/app:v2" {
		t.Errorf("insecure registry destination %s: %+v", d, d.ref.remote)
	}
}
