package node

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// BenchmarkVolumeStats measures NodeGetVolumeStats' two ways of counting
// a volume's writes on an upper of 100,000 files: the walk of an unsized
// volume's tree, and the read of a sized volume's limit (here its image's
// filesystem, the fallback this kernel allows). The walk is the baseline.
//
//	go test -run '^$' -bench VolumeStats -benchtime 5x ./pkg/csi/node/
func BenchmarkVolumeStats(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	s, err := layers.Open(ctx, layers.Options{Root: b.TempDir(), NoSync: true, Quota: quota.Options{Mode: quota.ModeFallback}})
	if err != nil {
		b.Fatal(err)
	}
	target := filepath.Join(b.TempDir(), "mnt")
	vol, err := s.Mount(ctx, layers.VolumeSpec{ID: "stats", Target: target, Size: 2 << 30})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Unmount(ctx, "stats", layers.RemoveUpper) })
	const files = 100_000
	for d := range files / 1000 {
		dir := filepath.Join(target, "d"+strconv.Itoa(d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 1000 {
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(f)), []byte("x"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("walk", func(b *testing.B) {
		for b.Loop() {
			u, err := diskUsage(ctx, vol.UpperDir())
			if err != nil || u.inodes != files+files/1000 {
				b.Fatalf("%+v %v", u, err)
			}
		}
	})
	b.Run("limit", func(b *testing.B) {
		for b.Loop() {
			u, err := s.Usage(ctx, vol)
			if err != nil || u.Inodes < files {
				b.Fatalf("%+v %v", u, err)
			}
		}
	})
}
