package nodeagent

import (
	"context"
	"slices"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

// Retry delays of a failed pull: doubled after each failure of the same
// chain, from minRetry up to maxRetry.
const (
	minRetry = 10 * time.Second
	maxRetry = 5 * time.Minute
)

// prefetcher pulls, one LayerSet at a time, the chains the reconciler
// asks for. Pulls run on their own so that a slow registry never holds up
// the report; each one that ends calls done.
type prefetcher struct {
	pull func(ctx context.Context, name string) error
	done func()
	now  func() time.Time
	// progress, if set, tells where the pull of a chain stands; it is
	// asked every progressEvery while a pull runs, and done is called
	// after, so the report shows it at that rate and no faster.
	progress      func([]source.Layer) layers.ChainProgress
	progressEvery time.Duration

	wake chan struct{} // buffered 1: "the wanted list changed"

	mu     sync.Mutex
	wanted []job
	state  map[string]*pull // by LayerSet name
}

type pull struct {
	pullState
	delay   time.Duration // after the last failure of ChainID
	retryAt time.Time
}

func newPrefetcher(pullFn func(context.Context, string) error, done func()) *prefetcher {
	return &prefetcher{pull: pullFn, done: done, now: time.Now, wake: make(chan struct{}, 1), state: map[string]*pull{}}
}

// want replaces the list of chains to pull. A LayerSet that is no longer
// wanted is forgotten, along with its failures.
func (p *prefetcher) want(jobs []job) {
	p.mu.Lock()
	p.wanted = jobs
	keep := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		keep[j.name] = true
	}
	for name, st := range p.state {
		if !keep[name] && !st.Pulling {
			delete(p.state, name)
		}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// states returns what is known about each LayerSet's pull.
func (p *prefetcher) states() map[string]pullState {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]pullState, len(p.state))
	for name, st := range p.state {
		out[name] = st.pullState
	}
	return out
}

// next picks the first wanted job that is not waiting for a retry and
// marks it pulling; without one, it says how long until a retry is due
// (0: none is).
func (p *prefetcher) next() (job, time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var wait time.Duration
	for _, j := range p.wanted {
		st := p.state[j.name]
		if st != nil && st.ChainID == j.chainID && st.Pulling {
			continue
		}
		if st != nil && st.ChainID == j.chainID && now.Before(st.retryAt) {
			if d := st.retryAt.Sub(now); wait == 0 || d < wait {
				wait = d
			}
			continue
		}
		if st == nil || st.ChainID != j.chainID {
			st = &pull{pullState: pullState{ChainID: j.chainID}}
			p.state[j.name] = st
		}
		st.Pulling = true
		return j, 0, true
	}
	return job{}, wait, false
}

func (p *prefetcher) finish(j job, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.state[j.name]
	if st == nil || st.ChainID != j.chainID {
		return
	}
	if err == nil {
		// Done until the reconciler, which the end of the pull wakes,
		// finds layers missing again.
		delete(p.state, j.name)
		p.wanted = slices.DeleteFunc(p.wanted, func(w job) bool { return w == j })
		return
	}
	st.Pulling = false
	st.Progress = layers.ChainProgress{}
	st.Err = err.Error()
	st.delay = min(max(2*st.delay, minRetry), maxRetry)
	st.retryAt = p.now().Add(st.delay)
}

// Start pulls until ctx ends.
func (p *prefetcher) Start(ctx context.Context) error {
	log := klog.FromContext(ctx).WithName("prefetch")
	for {
		j, wait, ok := p.next()
		if ok {
			start := p.now()
			pullCtx, watch := layers.WatchImports(ctx)
			stop := p.follow(pullCtx, j, watch)
			err := p.pull(pullCtx, j.name)
			stop()
			if ctx.Err() != nil {
				return nil
			}
			p.finish(j, err)
			if err != nil {
				log.Info("Cannot prefetch LayerSet", "layerSet", j.name, "chainID", j.chainID, "err", err)
			} else {
				log.V(1).Info("Prefetched LayerSet", "layerSet", j.name, "chainID", j.chainID, "duration", p.now().Sub(start))
			}
			p.done()
			continue
		}
		if !p.sleep(ctx, wait) {
			return nil
		}
	}
}

// follow samples the progress of j's pull, which imports under watch,
// every progressEvery until the returned stop is called, and calls done
// after each sample so the report is written again.
func (p *prefetcher) follow(ctx context.Context, j job, watch *layers.ImportWatch) (stop func()) {
	if p.progress == nil || p.progressEvery <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(p.progressEvery)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			progress := p.progress(watch.Layers())
			p.mu.Lock()
			if st := p.state[j.name]; st != nil && st.ChainID == j.chainID && st.Pulling {
				st.Progress = progress
			}
			p.mu.Unlock()
			p.done()
		}
	}()
	return func() {
		cancel()
		<-ended
	}
}

// sleep waits for the wanted list to change or, if wait > 0, for wait to
// pass. It returns false when ctx ends.
func (p *prefetcher) sleep(ctx context.Context, wait time.Duration) bool {
	var retry <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		retry = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-p.wake:
	case <-retry:
	}
	return true
}

// NeedLeaderElection is false: every node pulls for itself.
func (p *prefetcher) NeedLeaderElection() bool { return false }
