package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/layerset/layerset-csi/internal/testimage"
)

// opts reaches reg over plain HTTP and never reads the host's docker config.
func opts(reg *testimage.Registry) Options {
	return Options{Keychain: MultiKeychain(), Insecure: []string{reg.Host}}
}

func layer(t testing.TB, c testimage.Compression, entries ...testimage.Entry) v1.Layer {
	t.Helper()
	l, err := testimage.Layer(entries, c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func image(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := testimage.Image(layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digestOf(t testing.TB, x interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	d, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// checkLayers compares resolved layers with the ones built, reading every
// blob through Open.
func checkLayers(t *testing.T, got *Image, want []v1.Layer) {
	t.Helper()
	if len(got.Layers) != len(want) {
		t.Fatalf("%d layers, want %d", len(got.Layers), len(want))
	}
	for i, w := range want {
		l := got.Layers[i]
		wd := digestOf(t, w)
		wdiff, _ := w.DiffID()
		wmt, _ := w.MediaType()
		wsize, _ := w.Size()
		if l.Digest != wd || l.DiffID != wdiff || l.MediaType != wmt || l.Size != wsize || l.Source != got.Pinned {
			t.Errorf("layer %d = %+v, want digest %s diffID %s type %s size %d source %s", i, l, wd, wdiff, wmt, wsize, got.Pinned)
		}
		rc, err := l.Open(context.Background())
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		b, err := io.ReadAll(rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		wrc, _ := w.Compressed()
		wb, _ := io.ReadAll(wrc)
		if !bytes.Equal(b, wb) {
			t.Errorf("layer %d: blob differs from the one pushed", i)
		}
	}
}

func TestResolveTagAndDigestAgree(t *testing.T) {
	reg := testimage.NewRegistry(t)
	layers := []v1.Layer{
		layer(t, testimage.Gzip, testimage.File("a", "gzip")),
		layer(t, testimage.Zstd, testimage.File("b", "zstd")),
		layer(t, testimage.None, testimage.File("c", "plain")),
	}
	img := image(t, layers...)
	pinned := reg.Push(t, "app:v1", img)
	ctx := context.Background()

	byTag, err := Resolve(ctx, reg.Host+"/app:v1", opts(reg))
	if err != nil {
		t.Fatal(err)
	}
	byDigest, err := Resolve(ctx, pinned, opts(reg))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Resolve(ctx, byTag.Pinned, opts(reg))
	if err != nil {
		t.Fatal(err)
	}
	want := digestOf(t, img)
	for _, got := range []*Image{byTag, byDigest, again} {
		if got.Digest != want || got.Pinned != pinned {
			t.Errorf("%s: digest %s pinned %s, want %s %s", got.Ref, got.Digest, got.Pinned, want, pinned)
		}
	}
	if byTag.Ref != reg.Host+"/app:v1" {
		t.Errorf("Ref %q, want it as given", byTag.Ref)
	}
	checkLayers(t, byTag, layers)
}

func TestResolveDockerSchema2(t *testing.T) {
	reg := testimage.NewRegistry(t)
	layers := []v1.Layer{
		testimage.WithMediaType(layer(t, testimage.Gzip, testimage.File("a", "1")), types.DockerLayer),
		testimage.WithMediaType(layer(t, testimage.None, testimage.File("b", "2")), types.DockerUncompressedLayer),
	}
	img := mutate.ConfigMediaType(mutate.MediaType(image(t, layers...), types.DockerManifestSchema2), types.DockerConfigJSON)
	reg.Push(t, "docker:v1", img)

	got, err := Resolve(context.Background(), reg.Host+"/docker:v1", opts(reg))
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) {
		t.Errorf("digest %s, want %s", got.Digest, digestOf(t, img))
	}
	checkLayers(t, got, layers)
}

func TestResolveRefusesLayerTypes(t *testing.T) {
	reg := testimage.NewRegistry(t)
	base := layer(t, testimage.Gzip, testimage.File("a", "1"))
	for _, mt := range []types.MediaType{types.DockerForeignLayer, types.OCIRestrictedLayer, "application/vnd.example.squashfs"} {
		reg.Push(t, "odd:v1", image(t, testimage.WithMediaType(base, mt)))
		_, err := Resolve(context.Background(), reg.Host+"/odd:v1", opts(reg))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), string(mt)) {
			t.Errorf("%s: error %v, want ErrUnsupported naming the media type", mt, err)
		}
	}
}

func TestResolveMultiPlatform(t *testing.T) {
	reg := testimage.NewRegistry(t)
	amd := image(t, layer(t, testimage.Gzip, testimage.File("arch", "amd64")))
	arm := image(t, layer(t, testimage.Gzip, testimage.File("arch", "arm64")))
	idx, err := testimage.Index(map[string]v1.Image{"linux/amd64": amd, "linux/arm64/v8": arm})
	if err != nil {
		t.Fatal(err)
	}
	indexPinned := reg.PushIndex(t, "multi:v1", idx)
	ctx := context.Background()

	for _, tc := range []struct {
		platform *v1.Platform
		want     v1.Image
	}{
		{&v1.Platform{OS: "linux", Architecture: "amd64"}, amd},
		{&v1.Platform{OS: "linux", Architecture: "arm64"}, arm},
		{&v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, arm},
	} {
		for _, ref := range []string{reg.Host + "/multi:v1", indexPinned} {
			o := opts(reg)
			o.Platform = tc.platform
			got, err := Resolve(ctx, ref, o)
			if err != nil {
				t.Fatal(err)
			}
			want := digestOf(t, tc.want)
			if got.Digest != want || got.Pinned != reg.Host+"/multi@"+want.String() {
				t.Errorf("%s for %s: got %s, want the %s image %s", ref, platformString(*tc.platform), got.Pinned, platformString(*tc.platform), want)
			}
			// The pinned form names the platform's manifest, not the index.
			again, err := Resolve(ctx, got.Pinned, Options{Keychain: MultiKeychain(), Insecure: []string{reg.Host}, Platform: &v1.Platform{OS: "plan9", Architecture: "mips"}})
			if err != nil || again.Digest != want {
				t.Errorf("re-resolving %s: %v, %v", got.Pinned, again, err)
			}
		}
	}

	o := opts(reg)
	o.Platform = &v1.Platform{OS: "linux", Architecture: "s390x"}
	_, err = Resolve(ctx, reg.Host+"/multi:v1", o)
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "linux/s390x") ||
		!strings.Contains(err.Error(), "offers: linux/amd64, linux/arm64/v8") {
		t.Fatalf("error %v, want ErrUnsupported naming linux/s390x and offering linux/amd64, linux/arm64/v8", err)
	}

	// With no Platform the node's own is used.
	host := hostPlatform()
	if host.OS == "linux" && (host.Architecture == "amd64" || host.Architecture == "arm64") {
		got, err := Resolve(ctx, reg.Host+"/multi:v1", opts(reg))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]v1.Image{"amd64": amd, "arm64": arm}[host.Architecture]
		if got.Digest != digestOf(t, want) {
			t.Errorf("default platform picked %s, want the %s image", got.Digest, host.Architecture)
		}
	}
}

func TestResolveNotFound(t *testing.T) {
	reg := testimage.NewRegistry(t)
	reg.Push(t, "app:v1", image(t, layer(t, testimage.Gzip, testimage.File("a", "1"))))
	for _, ref := range []string{
		reg.Host + "/app:v2",
		reg.Host + "/missing:v1",
		reg.Host + "/app@sha256:" + hexA,
	} {
		_, err := Resolve(context.Background(), ref, opts(reg))
		if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), ref) {
			t.Errorf("%s: error %v, want ErrNotFound naming the reference", ref, err)
		}
	}
}

func TestResolveUnauthorized(t *testing.T) {
	reg := testimage.NewRegistry(t, testimage.WithBasicAuth("puller", "s3cret"))
	l := layer(t, testimage.Gzip, testimage.File("a", "1"))
	reg.Push(t, "private:v1", image(t, l))
	ref := reg.Host + "/private:v1"
	ctx := context.Background()

	wrong, err := KeychainFromDockerConfigJSON([]byte(`{"auths":{"` + reg.Host + `":{"username":"puller","password":"guess"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for name, kc := range map[string]authn.Keychain{"anonymous": MultiKeychain(), "wrong password": wrong} {
		o := opts(reg)
		o.Keychain = kc
		_, err := Resolve(ctx, ref, o)
		var te *transport.Error
		if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &te) || te.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(err.Error(), "UNAUTHORIZED: authentication required") {
			t.Errorf("%s: error %v, want ErrUnauthorized keeping the registry's 401 and message", name, err)
		}
	}

	kc, err := KeychainFromDockerConfigJSON(reg.DockerConfigJSON())
	if err != nil {
		t.Fatal(err)
	}
	o := opts(reg)
	o.Keychain = MultiKeychain(wrongHost(t), kc)
	got, err := Resolve(ctx, ref, o)
	if err != nil {
		t.Fatal(err)
	}
	checkLayers(t, got, []v1.Layer{l})
}

func wrongHost(t *testing.T) authn.Keychain {
	kc, err := KeychainFromDockerConfigJSON([]byte(`{"auths":{"elsewhere.example":{"username":"x","password":"y"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

// corruptBlob is a fake: it flips one byte of every GET response for blob
// d, a fault (bit rot, a broken proxy or a malicious mirror) that no
// well-behaved registry can be made to produce.
func corruptBlob(d v1.Hash) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) {
				w = &flipFirstByte{ResponseWriter: w}
			}
			next.ServeHTTP(w, r)
		})
	}
}

type flipFirstByte struct {
	http.ResponseWriter
	done bool
}

func (f *flipFirstByte) Write(b []byte) (int, error) {
	if !f.done && len(b) > 0 {
		f.done = true
		c := append([]byte{}, b...)
		c[0] ^= 0xff
		return f.ResponseWriter.Write(c)
	}
	return f.ResponseWriter.Write(b)
}

func TestOpenDetectsTamperedBlob(t *testing.T) {
	good := layer(t, testimage.Gzip, testimage.File("good", "1"))
	bad := layer(t, testimage.Gzip, testimage.File("bad", "2"))
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(corruptBlob(digestOf(t, bad))))
	reg.Push(t, "app:v1", image(t, good, bad))

	img, err := Resolve(context.Background(), reg.Host+"/app:v1", opts(reg))
	if err != nil {
		t.Fatal(err) // manifests and config are intact
	}
	for i, wantErr := range []bool{false, true} {
		rc, err := img.Layers[i].Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc)
		if err := rc.Close(); err != nil {
			t.Error(err)
		}
		if (err != nil) != wantErr {
			t.Errorf("layer %d: read error %v, want error: %v", i, err, wantErr)
		}
		if wantErr && err != nil && !strings.Contains(err.Error(), digestOf(t, bad).String()) {
			t.Errorf("layer %d: error %q does not name the blob", i, err)
		}
	}
}

// countRequests counts requests that reached the handler.
func countRequests(n *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			next.ServeHTTP(w, r)
		})
	}
}

// go-containerregistry would fall back to plain HTTP for 127.0.0.1 on its
// own once TLS failed; unlisted, the registry must not see a single
// plain-HTTP request.
func TestLoopbackIsNotImplicitlyInsecure(t *testing.T) {
	var n atomic.Int64
	reg := testimage.NewRegistry(t, testimage.WithMiddleware(countRequests(&n)))
	reg.Push(t, "app:v1", image(t, layer(t, testimage.Gzip, testimage.File("a", "1"))))
	pushed := n.Load()

	_, err := Resolve(context.Background(), reg.Host+"/app:v1", Options{Keychain: MultiKeychain()})
	if err == nil {
		t.Fatal("resolved over plain HTTP from a registry not listed in Insecure")
	}
	t.Logf("unlisted plain-HTTP registry: %v", err)
	if got := n.Load() - pushed; got != 0 {
		t.Fatalf("%d plain-HTTP requests reached the unlisted registry", got)
	}
}

// A TLS registry on an unlisted loopback address still works: the guard
// upgrades go-containerregistry's plain-HTTP attempts rather than failing
// them.
func TestLoopbackTLSRegistry(t *testing.T) {
	srv := httptest.NewUnstartedServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	tr := &tlsOnly{next: srv.Client().Transport}

	l := layer(t, testimage.Zstd, testimage.File("a", "1"))
	img := image(t, l)
	ref, err := name.ParseReference(host + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(tr)); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve(context.Background(), host+"/app:v1",
		Options{Keychain: MultiKeychain(), Transport: srv.Client().Transport, UserAgent: "layerset-test"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digestOf(t, img) {
		t.Fatalf("digest %s, want %s", got.Digest, digestOf(t, img))
	}
	checkLayers(t, got, []v1.Layer{l})
}

func TestInsecureEntriesAreValidated(t *testing.T) {
	for _, bad := range []string{"http://r.example", "r.example/path", "r.example:", ""} {
		_, err := Resolve(context.Background(), "r.example/app:v1", Options{Insecure: []string{bad}})
		if !errors.Is(err, ErrInvalidReference) || !strings.Contains(err.Error(), "Options.Insecure") {
			t.Errorf("Insecure %q: error %v, want ErrInvalidReference about Options.Insecure", bad, err)
		}
	}
}

func TestOpenHonoursContext(t *testing.T) {
	reg := testimage.NewRegistry(t)
	reg.Push(t, "app:v1", image(t, layer(t, testimage.Gzip, testimage.File("a", "1"))))
	img, err := Resolve(context.Background(), reg.Host+"/app:v1", opts(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if rc, err := img.Layers[0].Open(ctx); err == nil {
		_, err = io.ReadAll(rc)
		if err := rc.Close(); err != nil {
			t.Error(err)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read with a cancelled context: %v", err)
		}
	} else if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with a cancelled context: %v", err)
	}
}
