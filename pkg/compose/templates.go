package compose

import (
	"context"
	"sync"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// Bounds of what a Templates keeps: LayerSets hold a few small templates,
// and whoever writes LayerSets must not be able to fill the plugin's
// memory with parsed ones. Past either bound the cache starts over.
const (
	maxCachedTemplates     = 256
	maxCachedTemplateBytes = 4 << 20 // of template text
	// maxIdleCopies bounds the copies of one template kept for executions
	// side by side: pods starting at once on a node.
	maxIdleCopies = 8
)

// Templates keeps init templates parsed, so that the volumes of a
// LayerSet parse, check and bind each of its templates once rather than
// once each: for a one-line template that was most of rendering, and a
// tenth of the plugin's own work in a warm publish. Templates are known by
// their name and text, so a changed LayerSet finds its new ones and never
// an old one. The zero value is ready; it is safe for concurrent use.
type Templates struct {
	mu      sync.Mutex
	entries map[templateKey]*cachedTemplate
	bytes   int
}

type templateKey struct{ name, text string }

// cachedTemplate is one template's copies not executing now. A copy runs
// one execution at a time, since its functions charge that execution's
// budget.
type cachedTemplate struct {
	idle []*parsed
	base *parsed // what more copies are cloned from
}

// RenderInit is the package's RenderInit with the templates kept in t. A
// nil t keeps nothing.
func (t *Templates) RenderInit(ctx context.Context, init *v1alpha1.InitLayer, pod PodInfo, keys KeyReader) ([]RenderedFile, error) {
	return renderInit(ctx, init, pod, keys, t)
}

// take returns the template name with text ready for one execution, and
// the function that gives it back.
func (t *Templates) take(name, text string) (*parsed, func(), error) {
	if t == nil || len(text) > maxCachedTemplateBytes/16 {
		p, err := parseInit(name, text)
		return p, func() {}, err
	}
	key := templateKey{name, text}
	p, base := t.idle(key)
	if p == nil && base != nil {
		var err error
		if p, err = base.clone(); err != nil {
			return nil, nil, err
		}
	}
	if p == nil {
		var err error
		if p, err = parseInit(name, text); err != nil {
			return nil, nil, err // not kept: a fixed LayerSet is parsed again
		}
		t.add(key, p)
	}
	return p, func() { t.giveBack(key, p) }, nil
}

// idle pops an idle copy of the template at key, or else returns what to
// clone one from; both nil when the template is not kept.
func (t *Templates) idle(key templateKey) (p, base *parsed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil {
		return nil, nil
	}
	if n := len(e.idle); n > 0 {
		p, e.idle = e.idle[n-1], e.idle[:n-1]
		return p, nil
	}
	return nil, e.base
}

// add keeps a newly parsed template, starting over when the cache is full.
func (t *Templates) add(key templateKey, p *parsed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.entries[key]; ok {
		return // parsed beside another execution: one is enough
	}
	size := len(key.name) + len(key.text)
	if t.entries == nil || len(t.entries) >= maxCachedTemplates || t.bytes+size > maxCachedTemplateBytes {
		t.entries, t.bytes = map[templateKey]*cachedTemplate{}, 0
	}
	t.entries[key] = &cachedTemplate{base: p}
	t.bytes += size
}

// giveBack makes a copy taken for an execution idle again.
func (t *Templates) giveBack(key templateKey, p *parsed) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[key]; e != nil && len(e.idle) < maxIdleCopies {
		e.idle = append(e.idle, p)
	}
}
