package layers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/rawmount"
	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// BenchmarkComposeMount measures what a pod start costs the store: compose
// a new volume (directories, init layer, lower file, record) and mount it,
// beside the bare fsopen/fsconfig mount of the same chain made inline. The
// two alternate each iteration; x-raw-p50 is the ratio of their medians,
// x-raw-mean of their means (which a journal commit or GC pause landing
// in one iteration moves).
//
// Persistent volumes sync their metadata to disk (one batched flush);
// ephemeral ones, which cannot outlive a reboot, do not.
func BenchmarkComposeMount(b *testing.B) {
	needRoot(b)
	for _, c := range []struct {
		n         int
		ephemeral bool
	}{{1, true}, {10, true}, {100, true}, {499, true}, {1, false}, {100, false}} { // 499 + the init layer = 500 lowers
		n, ephemeral := c.n, c.ephemeral
		kind := "persistent"
		if ephemeral {
			kind = "ephemeral"
		}
		b.Run(fmt.Sprintf("%s/layers=%d", kind, n+1), func(b *testing.B) {
			s := openStore(b, overlay.ModeAuto)
			img := pull(b, s, syntheticImage(b, n))
			chain := chainOf(img)
			lowers, err := s.chainLinks(chain)
			if err != nil {
				b.Fatal(err)
			}
			// The baseline mounts the same chain plus an init-sized layer.
			raw := filepath.Join(s.dir, "raw")
			for _, d := range []string{"diff", "work", "merged", "init"} {
				if err := os.MkdirAll(filepath.Join(raw, d), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			rawLowers := append([]string{"raw/init"}, lowers...)
			target := filepath.Join(b.TempDir(), "mnt")
			if err := os.Mkdir(target, 0o755); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			init := []InitFile{{Path: "etc/pod", Data: []byte("pod-name")}}
			ours, base := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("bench-%d", i)
				start := time.Now()
				if _, err := s.Mount(ctx, VolumeSpec{ID: id, Layers: chain, Init: init, Target: target, Ephemeral: ephemeral}); err != nil {
					b.Fatal(err)
				}
				ours = append(ours, time.Since(start))
				b.StopTimer()
				if err := s.Unmount(ctx, id, RemoveUpper); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start = time.Now()
				if err := rawmount.FSConfig(s.dir, rawLowers, "raw/diff", "raw/work", target); err != nil {
					b.Fatal(err)
				}
				base = append(base, time.Since(start))
				b.StopTimer()
				if err := unix.Unmount(target, 0); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(median(ours).Microseconds()), "p50-us-ours")
			b.ReportMetric(float64(median(base).Microseconds()), "p50-us-raw")
			b.ReportMetric(float64(median(ours))/float64(median(base)), "x-raw-p50")
			b.ReportMetric(float64(sum(ours))/float64(sum(base)), "x-raw-mean")
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func sum(d []time.Duration) (total time.Duration) {
	for _, x := range d {
		total += x
	}
	return total
}

// syntheticImage has n small layers.
func syntheticImage(b testing.TB, n int) v1.Image {
	layers := make([]v1.Layer, n)
	for i := range layers {
		layers[i] = mustLayer(b, testimage.None, testimage.File(fmt.Sprintf("layer-%03d", i), "x"))
	}
	img, err := testimage.Image(layers...)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkImport measures importing one ~100 MiB gzip layer from a local
// OCI layout (decompress, verify both digests, extract, rename into place)
// beside GNU tar -xzf of the same blob. x-tar is ours over tar's time.
// Neither syncs: tar never does, and NoSync matches it.
func BenchmarkImport(b *testing.B) {
	needRoot(b)
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("GNU tar is the baseline and is not installed")
	}
	dir := b.TempDir()
	blob, ref := writeBigLayer(b, dir)
	img, err := source.Resolve(context.Background(), ref, source.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(img.Layers[0].Size)
	var ours, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		root := filepath.Join(dir, fmt.Sprintf("root-%d", i))
		s, err := Open(context.Background(), Options{Root: root, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		tarDir := filepath.Join(dir, fmt.Sprintf("tar-%d", i))
		if err := os.Mkdir(tarDir, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := s.Import(context.Background(), img.Layers); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
		start = time.Now()
		if out, err := exec.Command("tar", "-xzf", blob, "-C", tarDir).CombinedOutput(); err != nil {
			b.Fatalf("tar: %v: %s", err, out)
		}
		base += time.Since(start)
		b.StopTimer()
		if err := errors.Join(os.RemoveAll(root), os.RemoveAll(tarDir)); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(ours)/float64(base), "x-tar")
}

// writeBigLayer writes an OCI layout holding one gzip layer of 2000 files
// (0–100 KiB, half random, half repetitive, in 50 directories) and returns
// the blob's path and the layout reference.
func writeBigLayer(b testing.TB, dir string) (blob, ref string) {
	rng := rand.New(rand.NewPCG(1, 2))
	var entries []testimage.Entry
	for i := range 2000 {
		size := rng.IntN(100 << 10)
		body := make([]byte, size)
		if i%2 == 0 {
			for j := range body {
				body[j] = byte(rng.Uint32())
			}
		} else {
			copy(body, bytes.Repeat([]byte("layerset "), size/9+1))
		}
		entries = append(entries, testimage.File(fmt.Sprintf("d%02d/f%04d", i%50, i), string(body)))
	}
	layer := mustLayer(b, testimage.Gzip, entries...)
	img, err := testimage.Image(layer)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, "layout")
	if err := testimage.WriteLayoutDir(path, "big", img); err != nil {
		b.Fatal(err)
	}
	digest, err := layer.Digest()
	if err != nil {
		b.Fatal(err)
	}
	return filepath.Join(path, "blobs", digest.Algorithm, digest.Hex), "oci:" + path + ":big"
}
