package source

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func TestManifestMediaType(t *testing.T) {
	for _, tc := range []struct {
		declared types.MediaType
		raw      string
		want     types.MediaType
	}{
		{types.DockerManifestSchema2, `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, types.OCIManifestSchema1},
		{types.DockerManifestList, `{"schemaVersion":2}`, types.DockerManifestList},
		{"", `{"schemaVersion":2,"manifests":[]}`, types.OCIImageIndex},
		{"application/json", `{"schemaVersion":2,"layers":[]}`, types.OCIManifestSchema1},
		{types.OCIImageIndex, `not json`, types.OCIImageIndex},
	} {
		if got := manifestMediaType(tc.declared, []byte(tc.raw)); got != tc.want {
			t.Errorf("manifestMediaType(%q, %s) = %q, want %q", tc.declared, tc.raw, got, tc.want)
		}
	}
}

func testHash(c byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(c), 64)}
}

func TestParseImageManifest(t *testing.T) {
	manifest := func(mt types.MediaType, configType types.MediaType, configSize int64) []byte {
		b, _ := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: mt,
			Config: v1.Descriptor{MediaType: configType, Digest: testHash('c'), Size: configSize}})
		return b
	}
	for _, tc := range []struct {
		name   string
		mt     types.MediaType
		raw    []byte
		unsupp string // substring of an ErrUnsupported error; "" = success
	}{
		{"oci", types.OCIManifestSchema1, manifest(types.OCIManifestSchema1, types.OCIConfigJSON, 10), ""},
		{"docker", types.DockerManifestSchema2, manifest(types.DockerManifestSchema2, types.DockerConfigJSON, 10), ""},
		{"schema1", types.DockerManifestSchema1Signed, []byte(`{}`), "schema 1"},
		{"artifact", types.OCIManifestSchema1, manifest(types.OCIManifestSchema1, "application/vnd.cncf.helm.config.v1+json", 10), "helm"},
		{"huge config", types.OCIManifestSchema1, manifest(types.OCIManifestSchema1, types.OCIConfigJSON, maxConfigSize+1), "limit is 8388608"},
		{"not a manifest", "text/plain", []byte(`{}`), "text/plain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseImageManifest(tc.mt, tc.raw)
			if tc.unsupp == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.unsupp) {
				t.Fatalf("error %v, want ErrUnsupported containing %q", err, tc.unsupp)
			}
		})
	}
}

func TestLayerList(t *testing.T) {
	layer := func(mt types.MediaType, c byte) v1.Descriptor {
		return v1.Descriptor{MediaType: mt, Digest: testHash(c), Size: 100}
	}
	cfg := func(n int, typ string) *v1.ConfigFile {
		c := &v1.ConfigFile{RootFS: v1.RootFS{Type: typ}}
		for i := range n {
			c.RootFS.DiffIDs = append(c.RootFS.DiffIDs, testHash(byte('a'+i)))
		}
		return c
	}
	all := []v1.Descriptor{
		layer(types.OCILayer, '1'), layer(types.OCILayerZStd, '2'), layer(types.OCIUncompressedLayer, '3'),
		layer(types.DockerLayer, '4'), layer(types.DockerUncompressedLayer, '5'),
	}
	for _, tc := range []struct {
		name   string
		layers []v1.Descriptor
		cfg    *v1.ConfigFile
		kind   error
		msg    string
	}{
		{"all supported types", all, cfg(5, "layers"), nil, ""},
		{"no layers", nil, cfg(0, "layers"), nil, ""},
		{"foreign", []v1.Descriptor{layer(types.DockerForeignLayer, '1')}, cfg(1, "layers"), ErrUnsupported, string(types.DockerForeignLayer)},
		{"restricted", []v1.Descriptor{layer(types.OCIRestrictedLayer, '1')}, cfg(1, "layers"), ErrUnsupported, "non-distributable"},
		{"unknown", []v1.Descriptor{layer("application/x-squashfs", '1')}, cfg(1, "layers"), ErrUnsupported, "application/x-squashfs"},
		{"too few diff ids", all, cfg(4, "layers"), nil, "lists 5 layers but its config lists 4"},
		{"too many diff ids", all[:1], cfg(2, "layers"), nil, "lists 1 layers but its config lists 2"},
		{"rootfs type", all[:1], cfg(1, "other"), ErrUnsupported, `"other"`},
		{"no digest", []v1.Descriptor{{MediaType: types.OCILayer, Size: 1}}, cfg(1, "layers"), nil, "no digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := layerList(&v1.Manifest{Layers: tc.layers}, tc.cfg)
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				for i, l := range got {
					d := tc.layers[i]
					if l.Digest != d.Digest || l.MediaType != d.MediaType || l.Size != d.Size || l.DiffID != tc.cfg.RootFS.DiffIDs[i] {
						t.Errorf("layer %d = %+v, want descriptor %+v with diff ID %s", i, l, d, tc.cfg.RootFS.DiffIDs[i])
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.kind != nil && !errors.Is(err, tc.kind)) {
				t.Fatalf("error %v, want %v containing %q", err, tc.kind, tc.msg)
			}
		})
	}
}

// FuzzImageDocuments: manifests and configs come from registries.
func FuzzImageDocuments(f *testing.F) {
	m, _ := json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: testHash('c'), Size: 2},
		Layers: []v1.Descriptor{{MediaType: types.OCILayer, Digest: testHash('1'), Size: 3}}})
	c, _ := json.Marshal(v1.ConfigFile{RootFS: v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{testHash('d')}}})
	f.Add(m, c)
	f.Add([]byte(`{"manifests":[{}]}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, rawManifest, rawConfig []byte) {
		mt := manifestMediaType("", rawManifest)
		if isIndex(mt) {
			if idx, err := parseIndex(rawManifest); err == nil {
				_, _ = selectManifest(idx, v1.Platform{OS: "linux", Architecture: "amd64"})
			}
			return
		}
		m, err := parseImageManifest(mt, rawManifest)
		if err != nil {
			return
		}
		cfg, err := parseConfig(rawConfig)
		if err != nil {
			return
		}
		layers, err := layerList(m, cfg)
		if err != nil {
			return
		}
		for i, l := range layers {
			if l.DiffID != cfg.RootFS.DiffIDs[i] || l.Digest != m.Layers[i].Digest || !layerTypes[l.MediaType] || l.Size < 0 {
				t.Fatalf("layer %d = %+v from %+v", i, l, m.Layers[i])
			}
		}
	})
}
