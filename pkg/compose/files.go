package compose

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// ParseLayerSet decodes one LayerSet document, strictly: unknown fields
// are errors, so a typo is reported instead of ignored.
func ParseLayerSet(data []byte) (*v1alpha1.LayerSet, error) {
	var ls v1alpha1.LayerSet
	if err := yaml.UnmarshalStrict(data, &ls); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	if ls.Kind != "LayerSet" || ls.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("%w: want apiVersion %s and kind LayerSet, got %q %q",
			ErrInvalidSpec, v1alpha1.GroupVersion, ls.APIVersion, ls.Kind)
	}
	if ls.Name == "" {
		return nil, fmt.Errorf("%w: metadata.name is empty", ErrInvalidSpec)
	}
	return &ls, nil
}

// LoadFile reads a LayerSet from a YAML file.
func LoadFile(path string) (*v1alpha1.LayerSet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ls, err := ParseLayerSet(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ls, nil
}

// LoadDir reads every *.yaml and *.yml LayerSet in dir, by name.
func LoadDir(dir string) (map[string]*v1alpha1.LayerSet, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]*v1alpha1.LayerSet{}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		ls, err := LoadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		if prev, dup := out[ls.Name]; dup && prev != nil {
			return nil, fmt.Errorf("%w: LayerSet %q is defined twice in %s", ErrInvalidSpec, ls.Name, dir)
		}
		out[ls.Name] = ls
	}
	return out, nil
}

// MapLookup looks LayerSets up in a map, as LoadDir returns.
func MapLookup(m map[string]*v1alpha1.LayerSet) Lookup {
	return func(_ context.Context, name string) (*v1alpha1.LayerSet, error) {
		if ls, ok := m[name]; ok {
			return ls, nil
		}
		return nil, fmt.Errorf("%w: %q", ErrLayerSetNotFound, name)
	}
}

// DirLookup looks LayerSets up among the files in dir, read at each call so
// that edits are seen.
func DirLookup(dir string) Lookup {
	return func(ctx context.Context, name string) (*v1alpha1.LayerSet, error) {
		all, err := LoadDir(dir)
		if err != nil {
			return nil, err
		}
		return MapLookup(all)(ctx, name)
	}
}
