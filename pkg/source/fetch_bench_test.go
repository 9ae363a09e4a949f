package source

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/layerset/layerset-csi/internal/testimage"
)

// BenchmarkBlobFetch reads a 512 MiB random blob through Layer.Open, digest
// checked, from the in-process registry: streamed (one GET) against ranged
// (the defaults: 8 MiB ranges over 4 connections), and reports the time
// ranged takes as a fraction of streamed (below 1: ranged is faster).
//
// On loopback there is no per-connection limit to get around, so ranged
// can only cost (more requests, a copy through its buffers). The
// simulated WAN puts a TCP proxy in front of the registry that caps each
// connection at 100 MB/s, as object stores and CDNs behind registries cap
// each connection; there the connections add up.
//
//	go test -run '^$' -bench BenchmarkBlobFetch -benchtime 3x ./pkg/source/
func BenchmarkBlobFetch(b *testing.B) {
	blob := randomBlob(512<<20, 42)
	reg := testimage.NewRegistry(b)
	pushBlob(b, reg, "bench:v1", blob)
	for _, tc := range []struct {
		name string
		rate int64 // bytes/s per connection; 0: loopback, unlimited
	}{
		{"loopback", 0},
		{"simulated-WAN-100MBps-per-connection", 100e6},
	} {
		b.Run(tc.name, func(b *testing.B) {
			host := reg.Host
			if tc.rate > 0 {
				host = newProxy(b, reg.Host, 0, 0, tc.rate).Host()
			}
			o := Options{Keychain: MultiKeychain(), Insecure: []string{host}}
			ranged := resolveLayer(b, host, "bench:v1", o)
			o.RangeThreshold = -1
			streamed := resolveLayer(b, host, "bench:v1", o)
			var st, rt time.Duration
			for b.Loop() {
				st += timeRead(b, streamed)
				rt += timeRead(b, ranged)
			}
			mb := float64(len(blob)) / 1e6 * float64(b.N)
			b.ReportMetric(float64(rt)/float64(st), "ranged/streamed")
			b.ReportMetric(mb/st.Seconds(), "streamed-MB/s")
			b.ReportMetric(mb/rt.Seconds(), "ranged-MB/s")
		})
	}
}

func timeRead(b *testing.B, l Layer) time.Duration {
	start := time.Now()
	rc, err := l.Open(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil || n != l.Size {
		b.Fatalf("read %d of %d bytes: %v", n, l.Size, err)
	}
	return time.Since(start)
}
