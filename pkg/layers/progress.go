package layers

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/source"
)

// DefaultProgressInterval is the default of Options.ProgressInterval.
const DefaultProgressInterval = 5 * time.Second

// LayerProgress is where the import of one layer stands. The bytes are
// the blob's as stored (compressed): what the registry sends.
type LayerProgress struct {
	DiffID  v1.Hash
	Digest  v1.Hash
	Done    int64 // bytes of the blob read so far
	Total   int64 // the blob's size, as its descriptor declares it
	Started time.Time
}

// ChainProgress is where the pull of a chain stands, counted over its
// distinct layers (by diffID) in compressed bytes, the unit a registry
// sends and a manifest declares. A layer in the store counts whole, one
// being imported counts what was read of its blob, one waiting to be
// imported (or whose import ended in failure) counts nothing. So Done
// only grows while the pull goes on, whichever caller asks and however
// often the pull is retried, and equals Total once every layer is here;
// Total-Done is what is still to be fetched.
type ChainProgress struct {
	Layers  int   // distinct layers of the chain
	Present int   // of them, in the store
	Pulling int   // of them, being imported now
	Done    int64 // compressed bytes of the present layers and read of the pulling ones
	Total   int64 // compressed bytes of all the chain's layers
}

// Complete reports whether every layer of the chain is in the store.
func (p ChainProgress) Complete() bool { return p.Present == p.Layers }

// String is the progress for people: "1.2/2.0 GiB (3 of 8 layers in the
// cache, 2 pulling)".
func (p ChainProgress) String() string {
	s := fmt.Sprintf("%s (%d of %d layers in the cache", BytesOf(p.Done, p.Total), p.Present, p.Layers)
	if p.Pulling > 0 {
		s += fmt.Sprintf(", %d pulling", p.Pulling)
	}
	return s + ")"
}

// BytesOf writes done of total bytes in the unit that suits total, as
// "1.2/2.0 GiB" or "512/2048 B".
func BytesOf(done, total int64) string {
	unit, name := byteUnit(total)
	if unit == 1 {
		return fmt.Sprintf("%d/%d B", done, total)
	}
	return fmt.Sprintf("%.1f/%.1f %s", float64(done)/float64(unit), float64(total)/float64(unit), name)
}

// bytesRate writes a rate in bytes per second, as "12.5 MiB/s".
func bytesRate(perSecond float64) string {
	unit, name := byteUnit(int64(perSecond))
	if unit == 1 {
		return fmt.Sprintf("%.0f B/s", perSecond)
	}
	return fmt.Sprintf("%.1f %s/s", perSecond/float64(unit), name)
}

func byteUnit(n int64) (int64, string) {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size {
			return u.size, u.name
		}
	}
	return 1, "B"
}

// PullStats are the store's totals of layer imports since it was opened,
// by every caller.
type PullStats struct {
	// Bytes is the compressed bytes read from layer blobs, by imports that
	// succeeded, failed or are still going.
	Bytes int64
	// Duration is the time spent importing layers, from the blob's
	// opening to the layer's rename into place, summed over layers:
	// concurrent imports each add their own. Imports in progress count
	// up to now.
	Duration time.Duration
	// Imported and Failed count the layer imports that ended.
	Imported, Failed int64
}

// pullTracker follows the store's layer imports; its zero value is ready.
type pullTracker struct {
	bytes atomic.Int64

	mu       sync.Mutex
	inflight map[string]*layerPull // by layer directory name
	finished time.Duration         // of the imports that ended
	imported int64
	failed   int64
}

// layerPull is one layer import in progress.
type layerPull struct {
	name    string
	diffID  v1.Hash
	digest  v1.Hash
	total   int64
	started time.Time
	done    atomic.Int64

	err  error         // set before stop is closed
	stop chan struct{} // closed when the import ends
	// logged is closed once the progress logger has written its last line.
	logged chan struct{}
}

// startPull records the import of layer l under name and, with a progress
// interval, logs its progress until endPull. The singleflight in
// importLayer makes it the only import of name in this process.
func (s *Store) startPull(log klog.Logger, name string, l source.Layer) *layerPull {
	p := &layerPull{
		name: name, diffID: l.DiffID, digest: l.Digest, total: l.Size, started: time.Now(),
		stop: make(chan struct{}), logged: make(chan struct{}),
	}
	t := &s.pulls
	t.mu.Lock()
	if t.inflight == nil {
		t.inflight = map[string]*layerPull{}
	}
	t.inflight[name] = p
	t.mu.Unlock()
	interval := s.opts.ProgressInterval
	if interval == 0 {
		interval = DefaultProgressInterval
	}
	if interval < 0 {
		close(p.logged)
		return p
	}
	go p.logProgress(log, interval)
	return p
}

// endPull ends the import p recorded, which err says failed or not.
func (s *Store) endPull(p *layerPull, err error) {
	t := &s.pulls
	t.mu.Lock()
	delete(t.inflight, p.name)
	t.finished += time.Since(p.started)
	if err != nil {
		t.failed++
	} else {
		t.imported++
	}
	t.mu.Unlock()
	p.err = err
	close(p.stop)
	<-p.logged
}

// logProgress logs where the import stands every interval, and once more
// when it ends if it logged before: a layer imported within the first
// interval, as most are, logs nothing here.
func (p *layerPull) logProgress(log klog.Logger, interval time.Duration) {
	defer close(p.logged)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var (
		logged bool
		last   int64
		lastAt = p.started
	)
	for {
		select {
		case now := <-tick.C:
			done := p.done.Load()
			// The rate over the last interval, so a stalled download shows
			// as one, not as a slowly falling average.
			rate := float64(done-last) / now.Sub(lastAt).Seconds()
			log.Info("Pulling layer", "done", done, "total", p.total, "rate", bytesRate(rate))
			logged, last, lastAt = true, done, now
		case <-p.stop:
			if !logged {
				return
			}
			d := time.Since(p.started)
			done := p.done.Load()
			kv := []any{"done", done, "total", p.total, "duration", d.Round(time.Millisecond),
				"rate", bytesRate(float64(done) / d.Seconds())}
			if p.err != nil {
				log.Info("Pull of layer failed", append(kv, "err", p.err)...)
				return
			}
			log.Info("Pulled layer", kv...)
			return
		}
	}
}

// count wraps the blob reader of p's import, counting what is read.
func (s *Store) count(p *layerPull, r io.ReadCloser) io.ReadCloser {
	return &countingReader{ReadCloser: r, p: p, total: &s.pulls.bytes}
}

type countingReader struct {
	io.ReadCloser
	p     *layerPull
	total *atomic.Int64
}

func (r *countingReader) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	if n > 0 {
		r.p.done.Add(int64(n))
		r.total.Add(int64(n))
	}
	return n, err
}

// Progress returns the layers this store is importing now, oldest first.
// Imports by other processes on the same store are not seen.
func (s *Store) Progress() []LayerProgress {
	t := &s.pulls
	t.mu.Lock()
	out := make([]LayerProgress, 0, len(t.inflight))
	for _, p := range t.inflight {
		out = append(out, LayerProgress{DiffID: p.diffID, Digest: p.digest, Done: p.done.Load(), Total: p.total, Started: p.started})
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b LayerProgress) int { return a.Started.Compare(b.Started) })
	return out
}

// ChainProgress sums where the pull of chain stands (see ChainProgress);
// the layers need DiffID and Size only.
func (s *Store) ChainProgress(chain []source.Layer) ChainProgress {
	// Imports in flight are read before the store is: a layer that ends
	// in between is then counted whole, never not at all.
	inflight := map[v1.Hash]int64{}
	for _, p := range s.Progress() {
		inflight[p.DiffID] = p.Done
	}
	var cp ChainProgress
	seen := map[v1.Hash]bool{}
	for _, l := range chain {
		if seen[l.DiffID] {
			continue
		}
		seen[l.DiffID] = true
		cp.Layers++
		cp.Total += l.Size
		done, pulling := inflight[l.DiffID]
		switch {
		case s.HasLayer(l.DiffID):
			cp.Present++
			cp.Done += l.Size
		case pulling:
			cp.Pulling++
			cp.Done += min(done, l.Size)
		}
	}
	return cp
}

// PullStats returns the store's import totals.
func (s *Store) PullStats() PullStats {
	t := &s.pulls
	t.mu.Lock()
	defer t.mu.Unlock()
	st := PullStats{Bytes: t.bytes.Load(), Duration: t.finished, Imported: t.imported, Failed: t.failed}
	now := time.Now()
	for _, p := range t.inflight {
		st.Duration += now.Sub(p.started)
	}
	return st
}

// ImportWatch collects the layers Import is asked for under a context, so
// that a caller that goes through other packages to Import (a volume
// mount, a prefetch) can tell where its pull stands.
type ImportWatch struct {
	mu     sync.Mutex
	layers []source.Layer
	seen   map[v1.Hash]bool
}

type importWatchKey struct{}

// WatchImports returns a context whose imports the watch collects. It
// changes nothing of what Import does.
func WatchImports(ctx context.Context) (context.Context, *ImportWatch) {
	w := &ImportWatch{seen: map[v1.Hash]bool{}}
	return context.WithValue(ctx, importWatchKey{}, w), w
}

func watchOf(ctx context.Context) *ImportWatch {
	w, _ := ctx.Value(importWatchKey{}).(*ImportWatch)
	return w
}

func (w *ImportWatch) add(layers []source.Layer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range layers {
		if !w.seen[l.DiffID] {
			w.seen[l.DiffID] = true
			w.layers = append(w.layers, l)
		}
	}
}

// Layers returns the distinct layers Import was asked for, in order; nil
// when Import was not called.
func (w *ImportWatch) Layers() []source.Layer {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.layers)
}
