package testimage

import (
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an in-process registry speaking the distribution protocol over
// plain HTTP on the loopback interface. Clients must treat Host as insecure.
type Registry struct {
	Host  string // "127.0.0.1:PORT"
	URL   string // "http://127.0.0.1:PORT"
	Close func()

	user, pass string
}

// RegistryOption configures NewRegistry.
type RegistryOption func(*registryConfig)

type registryConfig struct {
	user, pass string
	wrap       []func(http.Handler) http.Handler
}

// WithBasicAuth makes every request need HTTP basic credentials user:pass;
// others get 401 with a Basic challenge, as a real registry would send.
func WithBasicAuth(user, pass string) RegistryOption {
	return func(c *registryConfig) { c.user, c.pass = user, pass }
}

// WithMiddleware wraps the registry handler (outside the auth check), to
// observe requests or to fake faults a real registry cannot be made to
// produce. Later options wrap earlier ones.
func WithMiddleware(mw func(http.Handler) http.Handler) RegistryOption {
	return func(c *registryConfig) { c.wrap = append(c.wrap, mw) }
}

// NewRegistry starts a registry that is shut down when t's test ends.
func NewRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	var c registryConfig
	for _, o := range opts {
		o(&c)
	}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if c.user != "" || c.pass != "" {
		h = basicAuth(h, c.user, c.pass)
	}
	for _, mw := range c.wrap {
		h = mw(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Registry{
		Host:  strings.TrimPrefix(srv.URL, "http://"),
		URL:   srv.URL,
		Close: srv.Close,
		user:  c.user,
		pass:  c.pass,
	}
}

// Push uploads img as HOST/repoTag ("repo:tag", without the host) and returns
// its digest-pinned reference "HOST/repo@sha256:...".
func (r *Registry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref := r.ref(t, repoTag)
	if err := remote.Write(ref, img, remote.WithAuth(r.auth())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return r.pinned(t, ref, img)
}

// PushIndex uploads idx and the images in it as HOST/repoTag and returns the
// index's digest-pinned reference.
func (r *Registry) PushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref := r.ref(t, repoTag)
	if err := remote.WriteIndex(ref, idx, remote.WithAuth(r.auth())); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return r.pinned(t, ref, idx)
}

// DockerConfigJSON returns a .dockerconfigjson document holding this
// registry's basic-auth credentials, as an image pull Secret would.
func (r *Registry) DockerConfigJSON() []byte {
	b, _ := json.Marshal(map[string]any{"auths": map[string]any{
		r.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.pass))},
	}})
	return b
}

func (r *Registry) ref(t testing.TB, repoTag string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatalf("reference %q: %v", repoTag, err)
	}
	return ref
}

func (r *Registry) auth() authn.Authenticator {
	if r.user == "" && r.pass == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.user, Password: r.pass}
}

func (r *Registry) pinned(t testing.TB, ref name.Reference, m interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	d, err := m.Digest()
	if err != nil {
		t.Fatalf("digest of %s: %v", ref, err)
	}
	return ref.Context().Digest(d.String()).String()
}

func basicAuth(next http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="testimage"`)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		next.ServeHTTP(w, req)
	})
}
