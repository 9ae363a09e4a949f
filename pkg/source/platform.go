package source

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BuildKit lists attestations in indexes as platform unknown/unknown.
const (
	attestationAnnotation = "vnd.docker.reference.type"
	attestationManifest   = "attestation-manifest"
)

// selectManifest picks the manifest for platform want from an index: the
// first entry, in index order, whose os, architecture and variant match.
// Index order is the publisher's preference.
//
// Variants match exactly after normalization; an arm/v7 node does not fall
// back to arm/v6 images. The error lists what the index offers, so the user
// can see whether the image was built for their nodes at all.
func selectManifest(idx *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	wantVariant := normalizeVariant(want.Architecture, want.Variant)
	var offered []string
	for _, d := range idx.Manifests {
		p := d.Platform
		if d.Annotations[attestationAnnotation] == attestationManifest {
			continue // BuildKit provenance, not a runnable image
		}
		if p == nil {
			offered = append(offered, "(no platform)")
			continue
		}
		if p.OS == want.OS && p.Architecture == want.Architecture &&
			normalizeVariant(p.Architecture, p.Variant) == wantVariant {
			return d, nil
		}
		offered = append(offered, platformString(*p))
	}
	slices.Sort(offered)
	offered = slices.Compact(offered)
	if len(offered) == 0 {
		offered = []string{"none"}
	}
	return v1.Descriptor{}, withKind(ErrUnsupported, fmt.Errorf(
		"index has no manifest for platform %s; it offers: %s", platformString(want), strings.Join(offered, ", ")))
}

// normalizeVariant makes the implied variant explicit: arm64 is v8 and arm
// is v7 unless stated, the defaults containerd and the OCI spec's examples use.
func normalizeVariant(arch, variant string) string {
	if variant != "" && !strings.HasPrefix(variant, "v") {
		variant = "v" + variant
	}
	switch {
	case arch == "arm64" && variant == "":
		return "v8"
	case arch == "arm" && variant == "":
		return "v7"
	case arch == "amd64" && variant == "v1":
		return ""
	}
	return variant
}

func platformString(p v1.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
