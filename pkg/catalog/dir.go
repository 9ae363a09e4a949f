package catalog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// Dir is the standalone catalog: a folder of LayerSet YAML files, the
// CRD's schema, one LayerSet per file. The folder is read again when
// fsnotify reports a change in it, or at every lookup when it cannot be
// watched. A folder that fails to read (a YAML typo, a name defined twice)
// keeps serving what it held before, and lookups of names it lacks report
// why, so one bad edit does not take down the volumes that already work.
type Dir struct {
	dir    string
	images *imageCache
	log    klog.Logger

	mu       sync.Mutex
	sets     map[string]*v1alpha1.LayerSet // the last read that succeeded
	gen      uint64                        // counts the reads that succeeded
	loadErr  error                         // why the last read failed; nil if it did not
	stale    bool                          // the folder changed since it was read
	watching bool                          // changes are reported; otherwise every lookup reads

	chains chainCache // of sets

	watcher   *fsnotify.Watcher
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ Catalog = (*Dir)(nil)

// NewDir serves the LayerSets in dir, resolving their images with opts.
// The watch stops when ctx ends or Close is called.
func NewDir(ctx context.Context, dir string, opts source.Options) (*Dir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("LayerSet folder %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("LayerSet folder: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("LayerSet folder %s is not a directory", abs)
	}
	d := &Dir{
		dir:    abs,
		images: newImageCache(opts),
		log:    klog.FromContext(ctx).WithValues("layerSets", abs),
		sets:   map[string]*v1alpha1.LayerSet{},
		stale:  true,
		done:   make(chan struct{}),
	}
	// Watch before the first read, so no change falls in between.
	ctx, d.stop = context.WithCancel(context.WithoutCancel(ctx))
	if w, err := fsnotify.NewWatcher(); err != nil {
		d.log.Info("Cannot watch the LayerSet folder; it will be read at every lookup", "err", err)
		close(d.done)
	} else if err := w.Add(abs); err != nil {
		d.log.Info("Cannot watch the LayerSet folder; it will be read at every lookup", "err", errors.Join(err, w.Close()))
		close(d.done)
	} else {
		d.watcher, d.watching = w, true
		go d.watch(ctx)
	}
	if sets, _, err := d.snapshot(); err != nil {
		d.log.Error(err, "LayerSet folder cannot be read; lookups will fail until it is fixed")
	} else {
		d.log.Info("Loaded LayerSets", "count", len(sets))
	}
	return d, nil
}

// Close stops watching the folder.
func (d *Dir) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.stop()
		if d.watcher != nil {
			err = d.watcher.Close()
		}
		<-d.done
	})
	return err
}

// Resolve returns the LayerSet called name and its chain, bottom first.
// A chain resolved before is used again while the folder is unchanged and
// its images' resolutions are still reused (see chainCache).
func (d *Dir) Resolve(ctx context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error) {
	sets, gen, loadErr := d.snapshot()
	now := d.images.now()
	if ls, chain, ok := d.chains.get(name, gen, now); ok {
		return ls, chain, nil
	}
	ls, ok := sets[name]
	if !ok {
		if loadErr != nil {
			return nil, nil, fmt.Errorf("%w: no LayerSet %q in %s, and the folder's last read failed: %w",
				compose.ErrLayerSetNotFound, name, d.dir, loadErr)
		}
		return nil, nil, fmt.Errorf("%w: no LayerSet %q in %s", compose.ErrLayerSetNotFound, name, d.dir)
	}
	expires := now.Add(imageTTL)
	resolve := func(ctx context.Context, ref string) (*source.Image, error) {
		img, until, err := d.images.resolveUntil(ctx, ref)
		if err == nil && until.Before(expires) {
			expires = until
		}
		return img, err
	}
	chain, err := compose.Resolve(ctx, ls, compose.MapLookup(sets), resolve)
	if err != nil {
		return nil, nil, classify(err)
	}
	d.chains.put(name, cachedChain{gen: gen, ls: ls, chain: chain, expires: expires})
	return ls.DeepCopy(), slices.Clone(chain), nil
}

// classify marks what compose.Resolve did not classify itself, the
// failure to resolve an image, as ErrNotReady; a caller's deadline stays
// what it is.
func classify(err error) error {
	for _, known := range []error{
		compose.ErrLayerSetNotFound, compose.ErrCycle, compose.ErrTooManyLayers, compose.ErrInvalidSpec,
		context.Canceled, context.DeadlineExceeded,
	} {
		if errors.Is(err, known) {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrNotReady, err)
}

// snapshot returns the LayerSets as the folder holds them now, reading it
// again if it changed or is not watched, and the generation of that read.
func (d *Dir) snapshot() (map[string]*v1alpha1.LayerSet, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.stale && d.watching {
		return d.sets, d.gen, d.loadErr
	}
	d.stale = false
	sets, err := compose.LoadDir(d.dir)
	if err != nil {
		if d.loadErr == nil || d.loadErr.Error() != err.Error() {
			d.log.Error(err, "Cannot read the LayerSet folder; keeping the LayerSets read before", "kept", len(d.sets))
		}
		d.loadErr = err
		return d.sets, d.gen, d.loadErr
	}
	if d.loadErr != nil {
		d.log.Info("LayerSet folder reads again", "count", len(sets))
	}
	d.sets, d.loadErr = sets, nil
	d.gen++
	return d.sets, d.gen, nil
}

// watch marks the folder stale on every change. When the watch breaks, it
// falls back to reading at every lookup.
func (d *Dir) watch(ctx context.Context) {
	defer close(d.done)
	defer func() {
		d.mu.Lock()
		d.watching = false
		d.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-d.watcher.Events:
			if !ok {
				return
			}
			d.log.V(4).Info("LayerSet folder changed", "event", ev.String())
			d.markStale()
		case err, ok := <-d.watcher.Errors:
			if !ok {
				return
			}
			// An overflowed queue loses events: read everything again.
			d.log.Info("Watch on the LayerSet folder reported an error; reading it again", "err", err)
			d.markStale()
		}
	}
}

func (d *Dir) markStale() {
	d.mu.Lock()
	d.stale = true
	d.mu.Unlock()
}
