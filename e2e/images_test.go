//go:build e2e

package e2e

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"regexp"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerset/layerset-csi/internal/testimage"
)

// pushedImage is an image in the node's registry.
type pushedImage struct {
	// Pinned is HOST/REPO@sha256:..., the reference a resolved chain names.
	Pinned string
	Layers []pushedLayer // bottom first
}

type pushedLayer struct {
	Digest, DiffID string
	Size           int64
}

// push builds an image of layers (bottom first) and pushes it to the
// node's registry as repoTag ("repo:tag").
func (c *cluster) push(t testing.TB, repoTag string, layers ...[]testimage.Entry) pushedImage {
	t.Helper()
	var built []pushedLayer
	img, err := imageOf(layers...)
	if err != nil {
		t.Fatalf("image %s: %v", repoTag, err)
	}
	pinned := c.registry.Push(t, repoTag, img)
	imgLayers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range imgLayers {
		d, err1 := l.Digest()
		diffID, err2 := l.DiffID()
		size, err3 := l.Size()
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("layer of %s: %v %v %v", repoTag, err1, err2, err3)
		}
		built = append(built, pushedLayer{Digest: d.String(), DiffID: diffID.String(), Size: size})
	}
	return pushedImage{Pinned: pinned, Layers: built}
}

// imageOf builds a linux/amd64 image of gzip layers holding entries.
func imageOf(layers ...[]testimage.Entry) (v1.Image, error) {
	var ls []v1.Layer
	for i, entries := range layers {
		l, err := testimage.Layer(entries, testimage.Gzip)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		ls = append(ls, l)
	}
	return testimage.Image(ls...)
}

// Python and busybox stand-ins for the images deploy/examples/layerset.yaml
// names: small, but with what a real chain has. The second layer of the
// Python image deletes a file of the first (a whiteout), the third replaces
// a directory of the first (an opaque directory).
func pythonLayers() [][]testimage.Entry {
	return [][]testimage.Entry{{
		testimage.Dir("etc"),
		testimage.File("etc/os-release", "ID=e2e\n"),
		testimage.Dir("usr"), testimage.Dir("usr/lib"), testimage.Dir("usr/lib/python3.13"),
		testimage.File("usr/lib/python3.13/os.py", "# os: layer 1\n"),
		testimage.File("usr/lib/python3.13/obsolete.py", "# deleted by layer 2\n"),
		testimage.Dir("usr/share"), testimage.Dir("usr/share/doc"), testimage.Dir("usr/share/doc/python"),
		testimage.File("usr/share/doc/python/README", "replaced by layer 3\n"),
		testimage.Dir("usr/local"), testimage.Dir("usr/local/bin"),
		{Name: "usr/local/bin/python3", Type: tar.TypeReg, Mode: 0o755, Body: "#!/bin/sh\necho Python 3.13\n"},
	}, {
		testimage.Dir("usr"), testimage.Dir("usr/lib"), testimage.Dir("usr/lib/python3.13"),
		testimage.Dir("usr/lib/python3.13/json"),
		testimage.File("usr/lib/python3.13/json/__init__.py", "# json: layer 2\n"),
		testimage.Whiteout("usr/lib/python3.13/obsolete.py"),
	}, {
		testimage.Dir("usr"), testimage.Dir("usr/share"), testimage.Dir("usr/share/doc"),
		testimage.Dir("usr/share/doc/python"),
		testimage.Opaque("usr/share/doc/python"),
		testimage.File("usr/share/doc/python/NEWS", "layer 3\n"),
		testimage.Dir("usr/local"), testimage.Dir("usr/local/bin"),
		{Name: "usr/local/bin/pip", Type: tar.TypeReg, Mode: 0o755, Body: "#!/bin/sh\necho pip\n"},
	}}
}

func busyboxLayers() [][]testimage.Entry {
	return [][]testimage.Entry{{
		testimage.Dir("etc"),
		testimage.File("etc/busybox-release", "busybox 1.37 (e2e)\n"),
	}}
}

// demoFiles is what a volume of the example LayerSet "demo" holds from its
// layers (the Python chain, then busybox), path to content; demoGone lists
// paths a lower layer has that an upper one deleted.
func demoFiles() map[string]string {
	return map[string]string{
		"etc/os-release":                      "ID=e2e\n",
		"usr/lib/python3.13/os.py":            "# os: layer 1\n",
		"usr/lib/python3.13/json/__init__.py": "# json: layer 2\n",
		"usr/share/doc/python/NEWS":           "layer 3\n",
		"usr/local/bin/pip":                   "#!/bin/sh\necho pip\n",
		"etc/busybox-release":                 "busybox 1.37 (e2e)\n",
	}
}

func demoGone() []string {
	return []string{"usr/lib/python3.13/obsolete.py", "usr/share/doc/python/README"}
}

// registryOffset is the size of the registry's log: requests after this
// call are logged after it.
func (c *cluster) registryOffset(t testing.TB) int64 {
	t.Helper()
	fi, err := os.Stat(c.registryLog)
	if err != nil {
		t.Fatalf("registry log: %v", err)
	}
	return fi.Size()
}

// blobGET matches a blob download in the registry's access log.
var blobGET = regexp.MustCompile(`"GET /v2/[^ ]+/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200 `)

// blobPulls counts the successful downloads of each blob the registry
// logged after offset.
func (c *cluster) blobPulls(t testing.TB, offset int64) map[string]int {
	t.Helper()
	f, err := os.Open(c.registryLog)
	if err != nil {
		t.Fatalf("registry log: %v", err)
	}
	defer func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pulls := map[string]int{}
	for _, m := range blobGET.FindAllStringSubmatch(string(b), -1) {
		pulls[m[1]]++
	}
	return pulls
}

// layerPulls sums blobPulls over the layers of images.
func layerPulls(pulls map[string]int, images ...pushedImage) (n int, detail string) {
	for _, img := range images {
		for _, l := range img.Layers {
			n += pulls[l.Digest]
			detail += fmt.Sprintf(" %s:%d", l.Digest[7:19], pulls[l.Digest])
		}
	}
	return n, detail
}
