package layers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

// while applies mw only as long as on is set: a fault that goes away, as a
// flaky registry's or network's does.
func while(on *atomic.Bool, mw func(http.Handler) http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		faulty := mw(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if on.Load() {
				faulty.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// dropMidBlob sends half of the blob at digest and then closes the
// connection, the first time it is asked for: a registry or proxy that
// drops a download once. A source that resumes gets the rest.
func dropMidBlob(digest string) func(http.Handler) http.Handler {
	var dropped atomic.Bool
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) || dropped.Swap(true) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &bufferedResponse{header: http.Header{}}
			next.ServeHTTP(rec, r)
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			body := rec.body.Bytes()
			_, _ = w.Write(body[:len(body)/2])
			_ = http.NewResponseController(w).Flush()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
		})
	}
}

// smallFilesystem mounts a tmpfs of size bytes under a temp dir: a disk
// that can be filled for real.
func smallFilesystem(t *testing.T, size int64) string {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the tmpfs: %v", err)
		}
	})
	return dir
}

// TestFaultThenRetry: an import that meets a fault mid-layer either gets
// through it (a dropped connection, if the source resumes) or fails with
// an error saying what happened, leaving no layer, no staging and no
// short link; once the fault is gone, the next import of the same image
// succeeds.
func TestFaultThenRetry(t *testing.T) {
	// 6000 files of 100 bytes: a tar stream of 6 MiB that takes 24 MiB
	// of tmpfs, a page a file. The budget, which counts the stream, lets
	// it start on 16 MiB free; the disk fills first.
	var many []testimage.Entry
	for i := range 6000 {
		many = append(many, testimage.File(fmt.Sprintf("d%02d/f%04d", i%64, i), strings.Repeat("x", 100)))
	}
	for _, tc := range []struct {
		name    string
		entries []testimage.Entry
		fault   func(digest string) func(http.Handler) http.Handler
		// disk is the size of a tmpfs for the store, filled but for
		// free bytes while the fault is on; 0: the test's disk.
		disk, free int64
		// check says whether the first import's error is the fault's;
		// nil: it may also succeed.
		check func(error) bool
	}{{
		name:    "blob bytes do not match the digest",
		entries: []testimage.Entry{testimage.File("f", randomBytes(256<<10))},
		fault:   corruptLayerBlobs,
		check:   func(err error) bool { return errors.Is(err, ErrDigestMismatch) },
	}, {
		name:    "connection dropped mid-blob",
		entries: []testimage.Entry{testimage.File("f", randomBytes(1<<20))},
		fault:   dropMidBlob,
	}, {
		name:    "disk full mid-layer",
		entries: many,
		disk:    48 << 20,
		free:    16 << 20,
		check: func(err error) bool {
			return errors.Is(err, unix.ENOSPC) && strings.Contains(err.Error(), "is full")
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			layer := mustLayer(t, testimage.Gzip, tc.entries...)
			d, _ := layer.Digest()
			var on atomic.Bool
			on.Store(true)
			var opts []testimage.RegistryOption
			if tc.fault != nil {
				opts = append(opts, testimage.WithMiddleware(while(&on, tc.fault(d.String()))))
			}
			reg := testimage.NewRegistry(t, opts...)
			img, _ := testimage.Image(layer)
			ref := reg.Push(t, "faulty/img:v1", img)

			root := t.TempDir()
			var filler string
			if tc.disk > 0 {
				root = smallFilesystem(t, tc.disk)
				filler = filepath.Join(root, "filler")
				fill(t, filler, tc.disk-tc.free)
			}
			s, err := Open(context.Background(), Options{Root: filepath.Join(root, "store"), MountMode: overlay.ModeAuto, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			diffID, _ := layer.DiffID()
			_, err = s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
			t.Logf("with the fault: %v", err)
			switch {
			case err == nil && tc.check == nil:
				if !s.HasLayer(diffID) {
					t.Fatal("the import got through the fault, but the layer is not in the store")
				}
			case err == nil:
				t.Fatal("the import succeeded despite the fault")
			case tc.check != nil && !tc.check(err):
				t.Fatalf("the error does not say what the fault was: %v", err)
			default:
				assertEmptyStore(t, s)
				if st := s.PullStats(); st.Failed != 1 || st.Imported != 0 {
					t.Errorf("totals %+v, want one failed import", st)
				}
			}

			on.Store(false)
			if filler != "" {
				if err := os.Remove(filler); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}}); err != nil {
				t.Fatalf("the next import, the fault gone: %v", err)
			}
			assertLayerWhole(t, s, diffID, len(tc.entries))
		})
	}
}

// fill writes a file of n bytes, as another tenant of the disk would.
func fill(t *testing.T, path string, n int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.Write(buf[:k]); err != nil {
			t.Fatal(err)
		}
		n -= k
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// assertLayerWhole checks the layer is in the store with its short link,
// its entries counted, and nothing left in staging.
func assertLayerWhole(t *testing.T, s *Store, diffID v1.Hash, entries int) {
	t.Helper()
	ls, err := s.Layers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].DiffID != diffID.String() || ls[0].Entries < entries {
		t.Fatalf("layers %+v, want %s with at least %d entries", ls, diffID, entries)
	}
	if _, err := os.Stat(s.path(linkDir, ls[0].LinkID)); err != nil {
		t.Errorf("short link of the layer: %v", err)
	}
	if left, _ := os.ReadDir(s.path(stagingDir)); len(left) != 0 {
		t.Errorf("staging holds %d entries after the import", len(left))
	}
}
