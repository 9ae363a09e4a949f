package source

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/layerset/layerset-csi/internal/testimage"
)

func blobPath(dir string, h v1.Hash) string {
	return filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
}

func TestResolveLayout(t *testing.T) {
	dir := t.TempDir()
	layers := []v1.Layer{
		layer(t, testimage.Zstd, testimage.File("a", "1")),
		layer(t, testimage.None, testimage.File("b", "2")),
	}
	img := image(t, layers...)
	testimage.WriteLayout(t, dir, "v1", img)
	want := digestOf(t, img)
	pinned := "oci:" + dir + "@" + want.String()
	ctx := context.Background()

	for _, ref := range []string{"oci:" + dir, "oci:" + dir + ":v1", pinned, "oci:" + dir + "/./:v1"} {
		got, err := Resolve(ctx, ref, Options{})
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if got.Digest != want || got.Pinned != pinned || got.Ref != ref {
			t.Errorf("%s: digest %s pinned %s, want %s %s", ref, got.Digest, got.Pinned, want, pinned)
		}
		checkLayers(t, got, layers)
	}
}

func TestResolveLayoutTags(t *testing.T) {
	dir := t.TempDir()
	a := image(t, layer(t, testimage.Gzip, testimage.File("a", "1")))
	b := image(t, layer(t, testimage.Gzip, testimage.File("b", "2")))
	testimage.WriteLayout(t, dir, "a", a)
	testimage.WriteLayout(t, dir, "b", b)
	testimage.WriteLayout(t, dir, "b", b) // re-tagging the same image is no ambiguity
	ctx := context.Background()

	for tag, img := range map[string]v1.Image{"a": a, "b": b} {
		got, err := Resolve(ctx, "oci:"+dir+":"+tag, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Digest != digestOf(t, img) {
			t.Errorf("tag %s: %s, want %s", tag, got.Digest, digestOf(t, img))
		}
	}

	_, err := Resolve(ctx, "oci:"+dir, Options{})
	if !errors.Is(err, ErrInvalidReference) || !strings.Contains(err.Error(), "tags present: a, b") {
		t.Errorf("untagged reference to a 2-image layout: %v, want ErrInvalidReference listing a, b", err)
	}
	_, err = Resolve(ctx, "oci:"+dir+":c", Options{})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), "tags present: a, b") {
		t.Errorf("missing tag: %v, want ErrNotFound listing a, b", err)
	}

	testimage.WriteLayout(t, dir, "a", b)
	_, err = Resolve(ctx, "oci:"+dir+":a", Options{})
	if !errors.Is(err, ErrInvalidReference) || !strings.Contains(err.Error(), `different images tagged "a"`) {
		t.Errorf("tag on two images: %v, want ErrInvalidReference", err)
	}
}

func TestResolveLayoutMultiPlatform(t *testing.T) {
	dir := t.TempDir()
	amd := image(t, layer(t, testimage.Gzip, testimage.File("arch", "amd64")))
	arm := image(t, layer(t, testimage.Gzip, testimage.File("arch", "arm64")))
	idx, err := testimage.Index(map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm})
	if err != nil {
		t.Fatal(err)
	}
	testimage.WriteLayoutIndex(t, dir, "v1", idx)
	ctx := context.Background()

	got, err := Resolve(ctx, "oci:"+dir+":v1", Options{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, arm) {
		t.Fatalf("picked %s, want the arm64 image %s", got.Digest, digestOf(t, arm))
	}
	// The pinned manifest is only referenced from the nested index.
	again, err := Resolve(ctx, got.Pinned, Options{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil || again.Digest != got.Digest {
		t.Fatalf("re-resolving %s: %v, %v", got.Pinned, again, err)
	}
	_, err = Resolve(ctx, "oci:"+dir+":v1", Options{Platform: &v1.Platform{OS: "linux", Architecture: "riscv64"}})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "offers: linux/amd64, linux/arm64") {
		t.Fatalf("error %v, want ErrUnsupported offering linux/amd64, linux/arm64", err)
	}
}

func TestResolveLayoutNotFound(t *testing.T) {
	dir := t.TempDir()
	for _, ref := range []string{"oci:" + dir + "/missing", "oci:" + dir} {
		_, err := Resolve(context.Background(), ref, Options{})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: error %v, want ErrNotFound", ref, err)
		}
	}
	testimage.WriteLayout(t, dir, "v1", image(t))
	_, err := Resolve(context.Background(), "oci:"+dir+"@sha256:"+hexA, Options{})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown digest: %v, want ErrNotFound", err)
	}
}

// Layout blobs are plain files anyone with access can change: a changed
// layer must fail when read, a changed manifest when resolving.
func TestLayoutTampering(t *testing.T) {
	dir := t.TempDir()
	l := layer(t, testimage.Gzip, testimage.File("a", "1"))
	img := image(t, l)
	testimage.WriteLayout(t, dir, "v1", img)
	ctx := context.Background()

	got, err := Resolve(ctx, "oci:"+dir+":v1", Options{})
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobPath(dir, digestOf(t, l)))
	rc, err := got.Layers[0].Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	if err := rc.Close(); err != nil {
		t.Error(err)
	}
	if err == nil || !strings.Contains(err.Error(), digestOf(t, l).String()) {
		t.Errorf("reading a tampered layout blob: %v, want a digest mismatch naming it", err)
	}

	if err := os.Truncate(blobPath(dir, digestOf(t, l)), 3); err != nil {
		t.Fatal(err)
	}
	rc, _ = got.Layers[0].Open(ctx)
	_, err = io.Copy(io.Discard, rc)
	if err := rc.Close(); err != nil {
		t.Error(err)
	}
	if err == nil || !strings.Contains(err.Error(), "ended after 3 bytes") {
		t.Errorf("reading a truncated layout blob: %v", err)
	}

	flipByte(t, blobPath(dir, digestOf(t, img)))
	if _, err := Resolve(ctx, "oci:"+dir+":v1", Options{}); err == nil || !strings.Contains(err.Error(), digestOf(t, img).String()) {
		t.Errorf("resolving with a tampered manifest: %v, want a digest mismatch", err)
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
