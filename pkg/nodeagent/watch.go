package nodeagent

import (
	"context"

	"github.com/fsnotify/fsnotify"
	"k8s.io/klog/v2"
)

// storeWatcher calls changed when an entry of the store's directory
// appears or goes: a layer imported or collected, a volume created or
// removed, whoever did it. Without inotify the report waits for the
// resync instead.
type storeWatcher struct {
	dir     string
	changed func()
}

func (w storeWatcher) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("dir", w.dir)
	fw, err := fsnotify.NewWatcher()
	if err == nil {
		defer func() {
			if err := fw.Close(); err != nil {
				logger.Error(err, "Closing the layer store watch")
			}
		}()
		err = fw.Add(w.dir)
	}
	if err != nil {
		logger.Info("Cannot watch the layer store; the cache is reported on the resync only", "err", err)
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
				w.changed()
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events, not the watch; the next event or
			// the resync catches up.
			logger.V(1).Info("Layer store watch", "err", err)
			w.changed()
		}
	}
}

// NeedLeaderElection is false: every node watches its own store.
func (storeWatcher) NeedLeaderElection() bool { return false }
