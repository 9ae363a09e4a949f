//go:build linux

package archive

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// BenchmarkReadAhead runs an import's stream (decompress, hash the tar,
// extract) on the ~100 MiB bench layer with the decompressor in the
// extractor's goroutine and behind ReadAhead, alternating, and reports the
// pipelined time over the serial one as x-serial (below 1 is a gain).
func BenchmarkReadAhead(b *testing.B) {
	needRoot(b)
	work := b.TempDir()
	gz, size := writeBenchLayer(b, work, true)
	zst := filepath.Join(work, "layer.tar.zst")
	recompressZstd(b, gz, zst)
	for _, tc := range []struct{ name, blob string }{{"gzip", gz}, {"zstd", zst}} {
		b.Run(tc.name, func(b *testing.B) {
			var serial, piped time.Duration
			b.SetBytes(size)
			for i := range b.N {
				for _, ahead := range []bool{i%2 == 0, i%2 != 0} {
					dst := freshDir(b, work, "dst")
					start := time.Now()
					if err := importStream(dst, tc.blob, ahead); err != nil {
						b.Fatal(err)
					}
					if ahead {
						piped += time.Since(start)
					} else {
						serial += time.Since(start)
					}
				}
			}
			b.ReportMetric(piped.Seconds()/serial.Seconds(), "x-serial")
		})
	}
}

func importStream(dst, blob string, ahead bool) (err error) {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	var r io.ReadCloser
	r, err = Decompress(f)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	if ahead {
		ra := ReadAhead(r, ReadAheadOptions{})
		defer func() { err = errors.Join(err, ra.Close()) }()
		r = ra
	}
	h := sha256.New()
	_, err = Apply(context.Background(), dst, io.TeeReader(r, h), Options{})
	return err
}

func recompressZstd(b *testing.B, gz, dst string) {
	in, err := os.Open(gz)
	if err != nil {
		b.Fatal(err)
	}
	tr, err := Decompress(in)
	if err != nil {
		b.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		b.Fatal(err)
	}
	zw, err := zstd.NewWriter(out)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(zw, tr); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(zw.Close(), out.Close(), tr.Close(), in.Close()); err != nil {
		b.Fatal(err)
	}
}
