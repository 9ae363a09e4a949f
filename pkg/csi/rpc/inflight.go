package rpc

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Inflight serializes operations per volume without queueing them: a call
// for a volume that is busy fails at once with Aborted, and kubelet, which
// retries with backoff, comes back when the first call is done. Calls for
// different volumes run in parallel.
type Inflight struct {
	mu   sync.Mutex
	busy map[string]bool
}

// NewInflight returns an Inflight with no volume busy.
func NewInflight() *Inflight { return &Inflight{busy: map[string]bool{}} }

// Acquire marks the volume busy and returns the function that releases it,
// or an Aborted status if it is busy already.
func (f *Inflight) Acquire(volumeID string) (release func(), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.busy[volumeID] {
		return nil, status.Errorf(codes.Aborted, "an operation on volume %s is in progress; retry when it completes", volumeID)
	}
	f.busy[volumeID] = true
	return func() {
		f.mu.Lock()
		delete(f.busy, volumeID)
		f.mu.Unlock()
	}, nil
}
