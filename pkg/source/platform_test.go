package source

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func desc(hexChar byte, platform string) v1.Descriptor {
	d := v1.Descriptor{Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(hexChar), 64)}}
	if platform != "" {
		d.Platform, _ = v1.ParsePlatform(platform)
	}
	return d
}

func TestSelectManifest(t *testing.T) {
	attestation := desc('f', "unknown/unknown")
	attestation.Annotations = map[string]string{attestationAnnotation: attestationManifest}
	index := []v1.Descriptor{
		attestation,
		desc('1', "linux/amd64"),
		desc('2', "linux/arm64/v8"),
		desc('3', "linux/arm/v7"),
		desc('4', "linux/arm/v6"),
		desc('5', "linux/amd64"), // later duplicate: index order is preference
		desc('6', "windows/amd64"),
	}
	for _, tc := range []struct {
		want    string
		pick    byte   // hex char of the chosen digest
		offered string // for no match
	}{
		{want: "linux/amd64", pick: '1'},
		{want: "linux/arm64", pick: '2'}, // arm64 implies v8
		{want: "linux/arm64/v8", pick: '2'},
		{want: "linux/arm", pick: '3'}, // arm implies v7
		{want: "linux/arm/v6", pick: '4'},
		{want: "windows/amd64", pick: '6'},
		{want: "linux/arm/v5", offered: "linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8, windows/amd64"},
		{want: "linux/s390x", offered: "linux/amd64, linux/arm/v6"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			p, _ := v1.ParsePlatform(tc.want)
			got, err := selectManifest(&v1.IndexManifest{Manifests: index}, *p)
			if tc.offered != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.offered) ||
					!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "unknown") {
					t.Fatalf("error %v, want ErrUnsupported naming %s and offering %q", err, tc.want, tc.offered)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest.Hex[0] != tc.pick {
				t.Errorf("picked %s (%s), want digest starting %c", got.Digest, got.Platform, tc.pick)
			}
		})
	}
}

func TestSelectManifestEmptyIndex(t *testing.T) {
	_, err := selectManifest(&v1.IndexManifest{Manifests: []v1.Descriptor{desc('1', "")}}, v1.Platform{OS: "linux", Architecture: "amd64"})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "(no platform)") {
		t.Fatalf("error %v, want ErrUnsupported listing (no platform)", err)
	}
}

func TestHostPlatform(t *testing.T) {
	p := hostPlatform()
	if p.OS != runtime.GOOS || p.Architecture != runtime.GOARCH {
		t.Fatalf("host platform %s, runtime is %s/%s", platformString(p), runtime.GOOS, runtime.GOARCH)
	}
	if (runtime.GOARCH == "arm") != (p.Variant != "") {
		t.Fatalf("variant %q on %s", p.Variant, runtime.GOARCH)
	}
}
