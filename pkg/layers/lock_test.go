package layers

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerset/layerset-csi/pkg/overlay"
)

// The shared flock is held while any operation of this store runs, and
// only then: another store on the same root (as another process would)
// gets the exclusive lock once the last of them ends.
func TestLockSharedAcrossHolders(t *testing.T) {
	a := openStore(t, overlay.ModeAuto)
	b, err := Open(context.Background(), Options{Root: filepath.Dir(a.dir), NoSync: true})
	mustDo(t, err)

	first, err := a.lock(shared)
	mustDo(t, err)
	second, err := a.lock(shared)
	mustDo(t, err)
	got := make(chan func(), 1)
	go func() {
		unlock, err := b.lock(exclusive)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		got <- unlock
	}()
	for _, release := range []func(){first, second} {
		select {
		case <-got:
			t.Fatal("the other store took the exclusive lock while this one held it shared")
		case <-time.After(100 * time.Millisecond):
		}
		release()
	}
	select {
	case unlock, ok := <-got:
		if !ok {
			return
		}
		// And the other way round: this store waits for the other.
		locked := make(chan struct{})
		go func() {
			if u, err := a.lock(shared); err == nil {
				u()
			}
			close(locked)
		}()
		select {
		case <-locked:
			t.Fatal("a shared lock was granted while the other store held it exclusively")
		case <-time.After(100 * time.Millisecond):
		}
		unlock()
		<-locked
	case <-time.After(10 * time.Second):
		t.Fatal("the exclusive lock was not granted after every shared holder released")
	}
}
