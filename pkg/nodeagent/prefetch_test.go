package nodeagent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/source"
)

func TestPrefetcherSchedule(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	p := newPrefetcher(func(context.Context, string) error { return nil }, func() {})
	p.now = func() time.Time { return now }
	next := func(wantName string, wantWait time.Duration) {
		t.Helper()
		j, wait, ok := p.next()
		if got := map[bool]string{true: j.name}[ok]; got != wantName || wait != wantWait {
			t.Fatalf("next = %q (ok %t), wait %s; want %q, wait %s", j.name, ok, wait, wantName, wantWait)
		}
	}
	failed := errors.New("503")
	a, b := job{"a", "chain-1"}, job{"b", "chain-1"}

	p.want([]job{a, b})
	next("a", 0)
	next("b", 0) // a is pulling
	next("", 0)  // both are
	if st := p.states()["a"]; !st.Pulling || st.ChainID != "chain-1" {
		t.Errorf("state of a while pulling: %+v", st)
	}
	p.finish(a, failed)
	p.finish(b, nil)
	if st := p.states()["a"]; st.Pulling || st.Err != "503" {
		t.Errorf("state of a after a failure: %+v", st)
	}
	if _, ok := p.states()["b"]; ok {
		t.Error("b is still tracked after its pull succeeded")
	}

	// Failures back off, doubling, up to maxRetry.
	p.want([]job{a})
	for _, delay := range []time.Duration{minRetry, 2 * minRetry, 4 * minRetry} {
		next("", delay)
		now = now.Add(delay)
		next("a", 0)
		p.finish(a, failed)
	}
	for range 10 {
		now = now.Add(maxRetry)
		next("a", 0)
		p.finish(a, failed)
	}
	next("", maxRetry)

	// A new chain is pulled at once, its predecessor's failures forgotten.
	a2 := job{"a", "chain-2"}
	p.want([]job{a2})
	next("a", 0)
	p.finish(a2, failed)
	next("", minRetry)

	// What is no longer wanted is forgotten.
	p.want(nil)
	if st := p.states(); len(st) != 0 {
		t.Errorf("states after want(nil): %+v", st)
	}
}

func TestPrefetcherRuns(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pulled := make(chan string)
	done := make(chan struct{}, 10)
	p := newPrefetcher(func(_ context.Context, name string) error {
		pulled <- name
		return nil
	}, func() { done <- struct{}{} })
	stopped := make(chan error)
	go func() { stopped <- p.Start(ctx) }()

	p.want([]job{{"a", "c"}, {"b", "c"}})
	for _, want := range []string{"a", "b"} {
		if got := <-pulled; got != want {
			t.Errorf("pulled %s, want %s", got, want)
		}
		<-done
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Start: %v", err)
	}
}

// TestPrefetcherFollowsProgress: while a pull runs, its progress is
// sampled at the interval and the report woken after each sample; once
// the pull ends, no more. (TestNodeAgent checks what is sampled.)
func TestPrefetcherFollowsProgress(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	release := make(chan struct{})
	woken := make(chan struct{}, 100)
	p := newPrefetcher(func(context.Context, string) error {
		<-release
		return nil
	}, func() { woken <- struct{}{} })
	var asked atomic.Int64
	p.progress = func([]source.Layer) layers.ChainProgress {
		return layers.ChainProgress{Layers: 1, Pulling: 1, Done: min(10*asked.Add(1), 100), Total: 100}
	}
	p.progressEvery = 5 * time.Millisecond
	stopped := make(chan error)
	go func() { stopped <- p.Start(ctx) }()

	p.want([]job{{"a", "c"}})
	<-woken
	<-woken
	if st := p.states()["a"]; !st.Pulling || st.Progress.Total != 100 || st.Progress.Done < 10 {
		t.Errorf("state while pulling: %+v, want the sampled progress", st)
	}
	close(release)
	for {
		<-woken
		if _, ok := p.states()["a"]; !ok {
			break
		}
	}
	n := asked.Load()
	time.Sleep(20 * time.Millisecond)
	if asked.Load() != n {
		t.Error("progress still sampled after the pull ended")
	}
	cancel()
	if err := <-stopped; err != nil {
		t.Errorf("Start: %v", err)
	}
}
