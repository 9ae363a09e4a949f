package compose

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

const (
	// maxInitFileBytes bounds one rendered init file; init layers are for
	// configuration, not data.
	maxInitFileBytes = 1 << 20
	// maxInitTotalBytes bounds all init files of one volume, which are
	// held in memory until written: sixteen files at the limit, or
	// hundreds of ordinary configuration files.
	maxInitTotalBytes = 16 << 20
	// maxInitFiles bounds the init files of one volume; it is the
	// LayerSet CRD's maxItems for init.files, so that LayerSets read from
	// a folder or file, which skip the API server's validation, are held
	// to the same limit.
	maxInitFiles = 256
)

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

// RenderInit produces the init files of one volume. Their number and
// total size are bounded (maxInitFiles, maxInitTotalBytes), as is the work
// of their templates (see template.go), and ctx is honoured between files
// and while a template runs.
func RenderInit(ctx context.Context, init *v1alpha1.InitLayer, pod PodInfo, keys KeyReader) ([]RenderedFile, error) {
	return renderInit(ctx, init, pod, keys, nil)
}

// renderInit is RenderInit, the templates taken from templates (nil: each
// parsed for this call).
func renderInit(ctx context.Context, init *v1alpha1.InitLayer, pod PodInfo, keys KeyReader, templates *Templates) ([]RenderedFile, error) {
	if init == nil {
		return nil, nil
	}
	if err := checkInit(init); err != nil {
		return nil, err
	}
	budget := newRenderBudget(ctx)
	left := maxInitTotalBytes
	out := make([]RenderedFile, 0, len(init.Files))
	for i, f := range init.Files {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("init.files[%d] (%s): %w", i, f.Path, err)
		}
		data, err := renderFile(ctx, budget, templates, f, pod, keys, left)
		if err != nil {
			return nil, fmt.Errorf("init.files[%d] (%s): %w", i, f.Path, err)
		}
		if len(data) > maxInitFileBytes {
			return nil, fmt.Errorf("%w: init.files[%d] (%s) is %d bytes, over the %d byte limit", ErrInvalidSpec, i, f.Path, len(data), maxInitFileBytes)
		}
		if len(data) > left {
			return nil, fmt.Errorf("%w: init.files[%d] (%s) brings the init files to %d bytes, over the %d byte limit for one volume",
				ErrInvalidSpec, i, f.Path, maxInitTotalBytes-left+len(data), maxInitTotalBytes)
		}
		left -= len(data)
		mode := os.FileMode(0o644)
		if f.Mode != nil {
			mode = os.FileMode(*f.Mode)
		}
		out = append(out, RenderedFile{Path: f.Path, Mode: mode, Data: data})
	}
	return out, nil
}

// checkInit refuses, before anything is rendered or read, init layers over
// the limits their spec alone shows: too many files, literal contents or
// template texts too large, modes that are not permission bits.
func checkInit(init *v1alpha1.InitLayer) error {
	if len(init.Files) > maxInitFiles {
		return fmt.Errorf("%w: init.files has %d files; one volume may have %d", ErrInvalidSpec, len(init.Files), maxInitFiles)
	}
	total := 0
	for i, f := range init.Files {
		var n int
		switch {
		case f.Content != nil:
			n = len(*f.Content)
			total += n
		case f.Template != nil:
			// Template text is not output, but a template larger than a
			// file's limit is not configuration either.
			n = len(*f.Template)
		}
		if n > maxInitFileBytes {
			return fmt.Errorf("%w: init.files[%d] (%s) is %d bytes, over the %d byte limit", ErrInvalidSpec, i, f.Path, n, maxInitFileBytes)
		}
		if total > maxInitTotalBytes {
			return fmt.Errorf("%w: the contents of init.files[0..%d] are %d bytes, over the %d byte limit for one volume",
				ErrInvalidSpec, i, total, maxInitTotalBytes)
		}
		if f.Mode != nil && (*f.Mode < 0 || *f.Mode > 0o777) {
			return fmt.Errorf("%w: init.files[%d] (%s) mode %#o is not a permission mode", ErrInvalidSpec, i, f.Path, *f.Mode)
		}
	}
	return nil
}

// renderFile produces one init file; left is what the volume's init files
// may still add.
func renderFile(ctx context.Context, budget *renderBudget, templates *Templates, f v1alpha1.InitFile, pod PodInfo, keys KeyReader, left int) ([]byte, error) {
	switch {
	case f.Content != nil:
		return []byte(*f.Content), nil
	case f.Template != nil:
		t, release, err := templates.take(f.Path, *f.Template)
		if err != nil {
			return nil, err
		}
		defer release()
		if err := budget.admit(t.cost); err != nil {
			return nil, err
		}
		w := &limitedWriter{ctx: ctx, file: maxInitFileBytes, total: left}
		if err := t.execute(budget, w, pod); err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			if errors.Is(err, ErrInvalidSpec) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		return w.bytes(), nil
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

// limitedWriter takes a template's output up to a file's and the volume's
// limits, and stops the template once ctx is done.
type limitedWriter struct {
	ctx   context.Context
	buf   bytes.Buffer
	file  int // maxInitFileBytes
	total int // what the volume's init files may still add
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if err := l.ctx.Err(); err != nil {
		return 0, err
	}
	n := l.buf.Len() + len(p)
	if n > l.file {
		return 0, fmt.Errorf("%w: template output exceeds %d bytes", ErrInvalidSpec, l.file)
	}
	if n > l.total {
		return 0, fmt.Errorf("%w: template output brings the init files over the %d byte limit for one volume", ErrInvalidSpec, maxInitTotalBytes)
	}
	return l.buf.Write(p)
}

// bytes is the output, without the slack the buffer grew, since init files
// are held until written.
func (l *limitedWriter) bytes() []byte {
	b := l.buf.Bytes()
	if cap(b)-len(b) > len(b)/4 {
		return bytes.Clone(b)
	}
	return b
}
