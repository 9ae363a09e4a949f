package source

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayoutPrefix introduces a reference to an OCI image layout on disk.
const LayoutPrefix = "oci:"

// reference is a parsed image reference: a registry reference, or an OCI
// layout directory with at most one of tag and digest.
type reference struct {
	remote name.Reference

	layout string  // absolute, clean path
	tag    string  // org.opencontainers.image.ref.name to look up
	digest v1.Hash // manifest digest to look up
}

const referenceForms = "want REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST " +
	"(fully qualified, e.g. docker.io/library/busybox:1.37), or oci:/ABSOLUTE/PATH[:TAG|@sha256:DIGEST]"

// digestSuffix tells "PATH@sha256:..." from a path that merely contains '@'.
var digestSuffix = regexp.MustCompile(`@([a-z0-9]+(?:[+._-][a-z0-9]+)*:[^/]*)$`)

// parseReference parses s. Registry references must be fully qualified
// (name.StrictValidation): an implicit docker.io or :latest would make what
// a volume holds depend on defaults the user never wrote down. insecure
// reports whether a registry host may be reached over plain HTTP.
func parseReference(s string, insecure func(host string) bool) (reference, error) {
	if rest, ok := strings.CutPrefix(s, LayoutPrefix); ok && strings.HasPrefix(rest, "/") {
		return parseLayoutReference(s, rest)
	}
	if strings.Contains(s, "://") {
		return reference{}, withKind(ErrInvalidReference, fmt.Errorf(
			"image reference %q: drop the URL scheme; list the registry in Options.Insecure to use plain HTTP", s))
	}
	opts := []name.Option{name.StrictValidation}
	parse := func() (name.Reference, error) {
		if strings.Contains(s, "@") {
			return name.NewDigest(s, opts...)
		}
		return name.NewTag(s, opts...)
	}
	ref, err := parse()
	if err != nil {
		if strings.HasPrefix(s, LayoutPrefix) {
			return reference{}, withKind(ErrInvalidReference,
				fmt.Errorf("image reference %q: an OCI layout path must be absolute (oci:/PATH)", s))
		}
		return reference{}, withKind(ErrInvalidReference, fmt.Errorf("image reference %q: %w; %s", s, err, referenceForms))
	}
	if insecure(ref.Context().RegistryStr()) {
		opts = append(opts, name.Insecure)
		if ref, err = parse(); err != nil {
			return reference{}, withKind(ErrInvalidReference, fmt.Errorf("image reference %q: %w", s, err))
		}
	}
	return reference{remote: ref}, nil
}

func parseLayoutReference(s, rest string) (reference, error) {
	var r reference
	if m := digestSuffix.FindStringSubmatchIndex(rest); m != nil {
		h, err := v1.NewHash(rest[m[2]:m[3]])
		if err != nil {
			return reference{}, withKind(ErrInvalidReference, fmt.Errorf("image reference %q: digest: %w", s, err))
		}
		r.digest, rest = h, rest[:m[0]]
	} else if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		r.tag, rest = rest[i+1:], rest[:i]
		if r.tag == "" {
			return reference{}, withKind(ErrInvalidReference, fmt.Errorf("image reference %q: empty tag after ':'", s))
		}
	}
	r.layout = filepath.Clean(rest)
	// Printed back, a ':' or '@' in the last element would read as a tag
	// or a digest.
	if base := filepath.Base(r.layout); strings.ContainsAny(base, ":@") {
		return reference{}, withKind(ErrInvalidReference, fmt.Errorf(
			"image reference %q: OCI layout directory name %q contains ':' or '@', which reads as a tag or digest; rename or symlink it", s, base))
	}
	return r, nil
}

// pinned is the digest-pinned form of r for manifest digest d.
func (r reference) pinned(d v1.Hash) string {
	if r.remote != nil {
		return r.remote.Context().Digest(d.String()).String()
	}
	return LayoutPrefix + r.layout + "@" + d.String()
}

func (r reference) String() string {
	switch {
	case r.remote != nil:
		return r.remote.String()
	case r.digest != v1.Hash{}:
		return LayoutPrefix + r.layout + "@" + r.digest.String()
	case r.tag != "":
		return LayoutPrefix + r.layout + ":" + r.tag
	}
	return LayoutPrefix + r.layout
}
