package compose

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"text/template"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// maxInitFileBytes bounds one rendered init file; init layers are for
// configuration, not data.
const maxInitFileBytes = 1 << 20

// PodInfo is what init templates can refer to.
type PodInfo struct {
	PodName        string
	PodNamespace   string
	PodUID         string
	ServiceAccount string
	NodeName       string
	VolumeID       string
}

// Key kinds a KeyReader is asked for.
const (
	KindConfigMap = "ConfigMap"
	KindSecret    = "Secret"
)

// KeyReader returns the value of one key of a ConfigMap or Secret. It is
// nil where no cluster is at hand (standalone mode).
type KeyReader func(ctx context.Context, kind string, ref v1alpha1.KeyReference) ([]byte, error)

// RenderedFile is one init file of one volume, ready to be written into
// its init layer.
type RenderedFile struct {
	// Path is relative to the volume root, as the LayerSet gave it.
	Path string
	// Mode holds the permission bits.
	Mode os.FileMode
	Data []byte
}

// RenderInit produces the init files of one volume.
func RenderInit(ctx context.Context, init *v1alpha1.InitLayer, pod PodInfo, keys KeyReader) ([]RenderedFile, error) {
	if init == nil {
		return nil, nil
	}
	out := make([]RenderedFile, 0, len(init.Files))
	for i, f := range init.Files {
		data, err := renderFile(ctx, f, pod, keys)
		if err != nil {
			return nil, fmt.Errorf("init.files[%d] (%s): %w", i, f.Path, err)
		}
		if len(data) > maxInitFileBytes {
			return nil, fmt.Errorf("%w: init.files[%d] (%s) is %d bytes, over the %d byte limit", ErrInvalidSpec, i, f.Path, len(data), maxInitFileBytes)
		}
		mode := os.FileMode(0o644)
		if f.Mode != nil {
			if *f.Mode < 0 || *f.Mode > 0o777 {
				return nil, fmt.Errorf("%w: init.files[%d] (%s) mode %#o is not a permission mode", ErrInvalidSpec, i, f.Path, *f.Mode)
			}
			mode = os.FileMode(*f.Mode)
		}
		out = append(out, RenderedFile{Path: f.Path, Mode: mode, Data: data})
	}
	return out, nil
}

func renderFile(ctx context.Context, f v1alpha1.InitFile, pod PodInfo, keys KeyReader) ([]byte, error) {
	switch {
	case f.Content != nil:
		return []byte(*f.Content), nil
	case f.Template != nil:
		t, err := template.New(f.Path).Option("missingkey=error").Parse(*f.Template)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&limitedWriter{w: &buf, n: maxInitFileBytes + 1}, pod); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		return buf.Bytes(), nil
	case f.ConfigMapKeyRef != nil:
		return readKey(ctx, keys, KindConfigMap, *f.ConfigMapKeyRef)
	case f.SecretKeyRef != nil:
		return readKey(ctx, keys, KindSecret, *f.SecretKeyRef)
	}
	return nil, fmt.Errorf("%w: no content, template, configMapKeyRef or secretKeyRef", ErrInvalidSpec)
}

func readKey(ctx context.Context, keys KeyReader, kind string, ref v1alpha1.KeyReference) ([]byte, error) {
	if keys == nil {
		return nil, fmt.Errorf("%w: %s %s/%s needs the Kubernetes API, which standalone mode does not use", ErrInvalidSpec, kind, ref.Namespace, ref.Name)
	}
	return keys(ctx, kind, ref)
}

// limitedWriter stops a template that would render without bound.
type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.w.Len()+len(p) > l.n {
		return 0, fmt.Errorf("%w: template output exceeds %d bytes", ErrInvalidSpec, maxInitFileBytes)
	}
	return l.w.Write(p)
}
