package envtest

import (
	"testing"
	"time"
)

// Timeout bounds how long Eventually waits: long enough for a controller
// on a loaded machine, short enough that a broken one fails the test.
const Timeout = 30 * time.Second

// Eventually calls cond every 100ms until it returns nil, and fails t with
// cond's last error if that takes longer than Timeout. Tests of
// asynchronous controllers poll with it rather than sleep.
func Eventually(t testing.TB, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", Timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
