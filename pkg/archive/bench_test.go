//go:build linux

package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// BenchmarkApply extracts a ~100 MiB layer of 2000 files with Apply and with
// GNU tar, alternating which goes first, and reports our time over tar's as
// x-gnutar (goal: at most 1).
func BenchmarkApply(b *testing.B) { benchmarkAgainstTar(b, false) }

// BenchmarkApplyGzip is BenchmarkApply on the gzipped layer: Decompress+Apply
// against `tar -xzf`.
func BenchmarkApplyGzip(b *testing.B) { benchmarkAgainstTar(b, true) }

func benchmarkAgainstTar(b *testing.B, gz bool) {
	needRoot(b)
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("needs GNU tar")
	}
	work := b.TempDir()
	blob, size := writeBenchLayer(b, work, gz)
	tarFlags := "-xf"
	if gz {
		tarFlags = "-xzf"
	}

	var ours, gnu time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		runOurs := func() {
			dst := freshDir(b, work, "ours")
			b.StartTimer()
			start := time.Now()
			if err := applyFile(dst, blob); err != nil {
				b.Fatal(err)
			}
			ours += time.Since(start)
			b.StopTimer()
		}
		runTar := func() {
			dst := freshDir(b, work, "gnu")
			start := time.Now()
			if out, err := exec.Command("tar", tarFlags, blob, "-C", dst).CombinedOutput(); err != nil {
				b.Fatalf("tar: %v: %s", err, out)
			}
			gnu += time.Since(start)
		}
		if i%2 == 0 {
			runOurs()
			runTar()
		} else {
			runTar()
			runOurs()
		}
	}
	b.ReportMetric(float64(gnu.Nanoseconds())/float64(b.N), "gnutar-ns/op")
	b.ReportMetric(ours.Seconds()/gnu.Seconds(), "x-gnutar")
}

func applyFile(dst, blob string) (err error) {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	r, err := Decompress(f)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	_, err = Apply(context.Background(), dst, r, Options{})
	return err
}

// freshDir replaces work/name with an empty directory and flushes dirty
// pages, so neither contender pays for the other's writeback.
func freshDir(b *testing.B, work, name string) string {
	dst := filepath.Join(work, name)
	if err := os.RemoveAll(dst); err != nil {
		b.Fatal(err)
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	unix.Sync()
	return dst
}

// writeBenchLayer writes a layer of 2000 files (sizes 0..256 KiB, most
// small, ~100 MiB in all; half random, half repetitive, so gzip gets ~2:1)
// in 100 nested directories, plus some symlinks and hardlinks.
func writeBenchLayer(b *testing.B, work string, gz bool) (path string, size int64) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 256<<10)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	text := make([]byte, 256<<10)
	for i := range text {
		text[i] = "package main // layer bench\n"[i%28]
	}
	content := make([]byte, 256<<10)
	for off := 0; off < len(content); off += 8 << 10 {
		copy(content[off:], random[off:off+4<<10])
		copy(content[off+4<<10:], text[off:off+4<<10])
	}

	path = filepath.Join(work, "layer.tar")
	if gz {
		path += ".gz"
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw = gzip.NewWriter(f)
		w = zw
	}
	tw := tar.NewWriter(w)
	hdr := func(h *tar.Header) {
		h.ModTime = epoch0
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
	}
	const dirs, perDir = 100, 20
	for d := range dirs {
		dir := fmt.Sprintf("usr/d%02d/sub%d/", d/5, d%5)
		if d%5 == 0 {
			hdr(&tar.Header{Name: dir[:len("usr/d00/")], Typeflag: tar.TypeDir, Mode: 0o755})
		}
		hdr(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755})
		for i := range perDir {
			name := fmt.Sprintf("%sf%02d", dir, i)
			u := rng.Float64()
			n := int(float64(256<<10) * u * u * u * u)
			hdr(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n)})
			if _, err := tw.Write(content[:n]); err != nil {
				b.Fatal(err)
			}
			size += int64(n)
		}
		hdr(&tar.Header{Name: dir + "link", Typeflag: tar.TypeSymlink, Linkname: "f00", Mode: 0o777})
		hdr(&tar.Header{Name: dir + "hard", Typeflag: tar.TypeLink, Linkname: dir + "f01"})
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path, size
}
