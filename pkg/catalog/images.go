package catalog

import (
	"context"
	"sync"
	"time"

	"github.com/layerset/layerset-csi/pkg/source"
)

// imageTTL bounds how long a tag's resolution is reused. It is short: long
// enough that a burst of pods starting on one node resolves each image
// once, short enough that a pushed tag is picked up within a minute.
const imageTTL = 30 * time.Second

// imageCache remembers image resolutions by reference for imageTTL.
// Failures are not remembered, so a registry that recovers is used at once.
type imageCache struct {
	resolve func(ctx context.Context, ref string) (*source.Image, error)
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]imageEntry
}

type imageEntry struct {
	img     *source.Image
	expires time.Time
}

func newImageCache(opts source.Options) *imageCache {
	return &imageCache{
		resolve: func(ctx context.Context, ref string) (*source.Image, error) {
			return source.Resolve(ctx, ref, opts)
		},
		now:     time.Now,
		entries: map[string]imageEntry{},
	}
}

// Resolve is a compose.ImageResolver.
func (c *imageCache) Resolve(ctx context.Context, ref string) (*source.Image, error) {
	img, _, err := c.resolveUntil(ctx, ref)
	return img, err
}

// resolveUntil is Resolve, and also says until when the resolution is
// reused: what is built from it is good as long.
func (c *imageCache) resolveUntil(ctx context.Context, ref string) (*source.Image, time.Time, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[ref]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.img, e.expires, nil
	}
	img, err := c.resolve(ctx, ref)
	if err != nil {
		return nil, time.Time{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries { // drop what expired, so references no LayerSet names any more go away
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	e = imageEntry{img: img, expires: now.Add(imageTTL)}
	c.entries[ref] = e
	return img, e.expires, nil
}
