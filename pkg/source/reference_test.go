package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const hexA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParseReference(t *testing.T) {
	insecure := func(h string) bool { return h == "plain.example:5000" }
	for _, tc := range []struct {
		in string
		// one of:
		remote, scheme   string // ref.String() and registry scheme
		layout, tag, dig string
		err              string // substring; ErrInvalidReference implied
	}{
		{in: "registry.example.com/app:v1", remote: "registry.example.com/app:v1", scheme: "https"},
		{in: "registry.example.com/team/app@sha256:" + hexA, remote: "registry.example.com/team/app@sha256:" + hexA, scheme: "https"},
		{in: "registry.example.com/app:v1@sha256:" + hexA, remote: "registry.example.com/app:v1@sha256:" + hexA, scheme: "https"},
		{in: "plain.example:5000/app:v1", remote: "plain.example:5000/app:v1", scheme: "http"},
		{in: "other.example:5000/app:v1", remote: "other.example:5000/app:v1", scheme: "https"},
		{in: "docker.io/library/busybox:1.37", remote: "docker.io/library/busybox:1.37", scheme: "https"},
		{in: "busybox", err: "fully qualified"},
		{in: "busybox:1.37", err: "registry to be explicitly defined"},
		{in: "docker.io/busybox:1", err: "missing 'library'"},
		{in: "registry.example.com/app", err: "registry.example.com/app"},
		{in: "https://registry.example.com/app:v1", err: "drop the URL scheme"},
		{in: "registry.example.com/app@sha256:abc", err: "sha256:abc"},
		{in: "", err: `""`},

		{in: "oci:/data/img", layout: "/data/img"},
		{in: "oci:/data/img:v1", layout: "/data/img", tag: "v1"},
		{in: "oci:/data/my:dir/img", layout: "/data/my:dir/img"},
		{in: "oci:/data/a/../img/:v1", layout: "/data/img", tag: "v1"},
		{in: "oci:/data/img@sha256:" + hexA, layout: "/data/img", dig: "sha256:" + hexA},
		{in: "oci:/data/user@host/img", layout: "/data/user@host/img"},
		{in: "oci:/data/img:", err: "empty tag"},
		{in: "oci:/data/img@sha256:zz", err: "digest"},
		{in: "oci:data/img", err: "must be absolute"},
		{in: "oci:/data/img:v1/", err: "contains ':'"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			r, err := parseReference(tc.in, insecure)
			if tc.err != "" {
				if !errors.Is(err, ErrInvalidReference) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want ErrInvalidReference containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.remote != "" {
				if r.remote == nil || r.remote.String() != tc.remote || r.remote.Context().Scheme() != tc.scheme {
					t.Fatalf("got %+v, want remote %s over %s", r, tc.remote, tc.scheme)
				}
				return
			}
			if r.remote != nil || r.layout != tc.layout || r.tag != tc.tag || r.digest.String() != tc.dig && tc.dig != "" {
				t.Fatalf("got layout %q tag %q digest %v, want %q %q %q", r.layout, r.tag, r.digest, tc.layout, tc.tag, tc.dig)
			}
		})
	}
}

func TestPinnedReparses(t *testing.T) {
	d := v1.Hash{Algorithm: "sha256", Hex: hexA}
	none := func(string) bool { return false }
	for _, in := range []string{"registry.example.com/app:v1", "oci:/data/img:v1", "oci:/data/img"} {
		r, err := parseReference(in, none)
		if err != nil {
			t.Fatal(err)
		}
		p := r.pinned(d)
		again, err := parseReference(p, none)
		if err != nil {
			t.Fatalf("%s: pinned form %q does not parse: %v", in, p, err)
		}
		if again.remote != nil {
			if _, ok := again.remote.(name.Digest); !ok || again.remote.Identifier() != d.String() {
				t.Errorf("%s: pinned %q parsed as %v", in, p, again.remote)
			}
		} else if again.digest != d || again.layout != r.layout || again.tag != "" {
			t.Errorf("%s: pinned %q parsed as %+v", in, p, again)
		}
	}
}

// FuzzParseReference: references come from user-written objects.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"registry.example.com/app:v1", "oci:/d/img:v1", "oci:/d@sha256:" + hexA,
		"localhost:5000/a@sha256:" + hexA, "oci:", "oci:/", "@", "a/b:c@d:e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReference(s, func(string) bool { return false })
		if err != nil {
			if !errors.Is(err, ErrInvalidReference) {
				t.Fatalf("%q: error %v is not ErrInvalidReference", s, err)
			}
			return
		}
		// Whatever parsed must print as something that parses the same way.
		again, err := parseReference(r.String(), func(string) bool { return false })
		if err != nil {
			t.Fatalf("%q printed as %q which does not parse: %v", s, r.String(), err)
		}
		if again.String() != r.String() {
			t.Fatalf("%q: %q reparsed as %q", s, r.String(), again.String())
		}
	})
}
