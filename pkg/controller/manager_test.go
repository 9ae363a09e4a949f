package controller

import (
	"strings"
	"testing"
	"time"
)

func TestValidateLeases(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		name                string
		lease, renew, retry time.Duration
		wantErr             string
	}{
		{"defaults", 0, 0, 0, ""},
		{"tolerant", 60 * s, 40 * s, 5 * s, ""},
		{"renew not shorter than lease", 10 * s, 10 * s, 2 * s, "must be shorter than the lease duration"},
		{"renew shorter than the default lease only", 0, 20 * s, 0, "must be shorter than the lease duration (15s)"},
		{"retry too close to renew", 15 * s, 10 * s, 9 * s, "must exceed 1.2 times the retry period (9s)"},
		{"negative", -s, 0, 0, "must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ManagerOptions{LeaseDuration: c.lease, RenewDeadline: c.renew, RetryPeriod: c.retry}.validateLeases()
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("validateLeases() = %v, want an error containing %q", err, c.wantErr)
			}
		})
	}
}
