package layers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerset/layerset-csi/internal/testimage"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/source"
)

var tooLargeRE = regexp.MustCompile(`refused after (\d+) bytes written, the limit is (\d+) bytes \(([^)]*)\)`)

// tooLargeNumbers returns the written and limit byte counts and the name of
// the limit that the message of an ErrLayerTooLarge gives.
func tooLargeNumbers(t *testing.T, err error) (written, limit int64, which string) {
	t.Helper()
	m := tooLargeRE.FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("message does not give the bytes written and the limit: %v", err)
	}
	written, _ = strconv.ParseInt(m[1], 10, 64)
	limit, _ = strconv.ParseInt(m[2], 10, 64)
	return written, limit, m[3]
}

func openLimitedStore(t *testing.T, opts Options) *Store {
	t.Helper()
	opts.Root, opts.MountMode, opts.NoSync = t.TempDir(), overlay.ModeAuto, true
	s, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func pullErr(t *testing.T, s *Store, img v1.Image, mws ...func(http.Handler) http.Handler) error {
	t.Helper()
	var opts []testimage.RegistryOption
	for _, mw := range mws {
		opts = append(opts, testimage.WithMiddleware(mw))
	}
	reg := testimage.NewRegistry(t, opts...)
	ref := reg.Push(t, "bomb/img:v1", img)
	_, err := s.Pull(context.Background(), ref, source.Options{Insecure: []string{reg.Host}})
	return err
}

// zeros is n zero bytes, which gzip compresses about a thousandfold.
func zeros(n int) string { return strings.Repeat("\x00", n) }

// TestGzipBombRefused imports real gzip bombs through the store's import
// path with an 8 MiB cache budget. The import stops at the limit, reports
// both numbers, and leaves nothing behind.
func TestGzipBombRefused(t *testing.T) {
	manyMiB := make([]testimage.Entry, 12)
	for i := range manyMiB {
		manyMiB[i] = testimage.File(fmt.Sprintf("f%02d", i), zeros(1<<20))
	}
	empties := make([]testimage.Entry, 2500) // 512-byte headers: about 1.2 MiB of tar
	for i := range empties {
		empties[i] = testimage.File(fmt.Sprintf("e%05d", i), "")
	}
	tests := []struct {
		name    string
		limit   int64 // 0: 8 MiB
		entries []testimage.Entry
		archive archive.Options
		diffID  bool // the config names a wrong diff_id
	}{
		// Refused at the header, which declares more than the limit.
		{name: "one 64 MiB file", entries: []testimage.Entry{testimage.File("zeros", zeros(64<<20))}},
		{name: "one 64 MiB file, wrong diff_id", entries: []testimage.Entry{testimage.File("zeros", zeros(64<<20))}, diffID: true},
		// Entries under MaxFileSize: the streamed count stops the import.
		{name: "12 files of 1 MiB, counted as they stream", entries: manyMiB, archive: archive.Options{MaxFileSize: 1 << 20}},
		// No data at all: only headers count.
		{name: "2500 empty files, 1 MiB limit", limit: 1 << 20, entries: empties},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			layer := mustLayer(t, testimage.Gzip, tt.entries...)
			if size, _ := layer.Size(); size > 1<<20 {
				t.Fatalf("the bomb's blob is %d bytes; want a small one", size)
			}
			img, err := testimage.Image(layer)
			if err != nil {
				t.Fatal(err)
			}
			if tt.diffID {
				img = withDiffID(t, img, 0, v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)})
			}
			limit := tt.limit
			if limit == 0 {
				limit = 8 << 20
			}
			s := openLimitedStore(t, Options{MaxLayerBytes: limit, Archive: tt.archive})
			err = pullErr(t, s, img)
			if !errors.Is(err, ErrLayerTooLarge) {
				t.Fatalf("want ErrLayerTooLarge, got %v", err)
			}
			t.Log(err)
			written, gotLimit, which := tooLargeNumbers(t, err)
			if gotLimit != limit || which != "the cache budget" {
				t.Errorf("limit reported as %d (%s), want %d (the cache budget): %v", gotLimit, which, limit, err)
			}
			if written > limit {
				t.Errorf("%d bytes written before the refusal, more than the %d-byte limit", written, limit)
			}
			assertEmptyStore(t, s)
		})
	}
}

// TestLayerUnderLimitImports checks the bound refuses only what crosses it:
// a layer just under the cache budget imports.
func TestLayerUnderLimitImports(t *testing.T) {
	raw, err := testimage.Tar([]testimage.Entry{testimage.File("zeros", zeros(4<<20))})
	if err != nil {
		t.Fatal(err)
	}
	s := openLimitedStore(t, Options{MaxLayerBytes: int64(len(raw))})
	img, _ := testimage.Image(mustLayer(t, testimage.Gzip, testimage.File("zeros", zeros(4<<20))))
	if err := pullErr(t, s, img); err != nil {
		t.Fatalf("a layer of exactly MaxLayerBytes: %v", err)
	}
	s = openLimitedStore(t, Options{MaxLayerBytes: int64(len(raw)) - 1})
	if err := pullErr(t, s, img); !errors.Is(err, ErrLayerTooLarge) {
		t.Fatalf("a layer one byte over MaxLayerBytes: want ErrLayerTooLarge, got %v", err)
	}
	assertEmptyStore(t, s)
}

// TestFreeSpaceReserveRefuses uses the real statfs of the test's
// filesystem with a reserve larger than any disk, so free space is the
// limit and nothing fits; filling a disk for real is not feasible here.
func TestFreeSpaceReserveRefuses(t *testing.T) {
	s := openLimitedStore(t, Options{MaxLayerBytes: 1 << 30, FreeSpaceReserve: 1 << 62})
	img, _ := testimage.Image(mustLayer(t, testimage.Gzip, testimage.File("f", "x")))
	err := pullErr(t, s, img)
	if !errors.Is(err, ErrLayerTooLarge) {
		t.Fatalf("want ErrLayerTooLarge, got %v", err)
	}
	if written, limit, which := tooLargeNumbers(t, err); written != 0 || limit != 0 || !strings.HasPrefix(which, "the free space of ") {
		t.Errorf("want 0 bytes written, a limit of 0 and the free space named, got %d, %d, %q", written, limit, which)
	}
	assertEmptyStore(t, s)
}

// TestFreeSpaceLimitArithmetic is a pure table test of the free-space
// bound: how much a layer may reach given what it wrote, what statfs says
// is available, and the reserve.
func TestFreeSpaceLimitArithmetic(t *testing.T) {
	for _, tt := range []struct {
		written, avail, reserve, want int64
	}{
		{0, 10 << 30, 1 << 30, 9 << 30},
		{2 << 30, 8 << 30, 1 << 30, 9 << 30}, // own writes use up avail: the limit holds
		{2 << 30, 4 << 30, 1 << 30, 5 << 30}, // someone else wrote 4 GiB meanwhile
		{0, 1 << 30, 1 << 30, 0},             // at the reserve: nothing fits
		{5, 100, 200, 5},                     // below it: not one more byte
		{0, 100, 0, 100},
	} {
		if got := freeSpaceLimit(tt.written, tt.avail, tt.reserve); got != tt.want {
			t.Errorf("freeSpaceLimit(written %d, avail %d, reserve %d) = %d, want %d", tt.written, tt.avail, tt.reserve, got, tt.want)
		}
	}
	for _, tt := range []struct {
		opt, size, want int64
	}{
		{0, 10 << 30, 10 << 30 / 100 * 5}, // 5% of a small filesystem
		{0, 1 << 40, DefaultMaxReserve},   // at most 1 GiB
		{0, 0, 0},
		{123, 1 << 40, 123}, // set explicitly
		{-1, 1 << 40, 0},    // no reserve
	} {
		if got := reserveFor(tt.opt, tt.size); got != tt.want {
			t.Errorf("reserveFor(%d, size %d) = %d, want %d", tt.opt, tt.size, got, tt.want)
		}
	}
}

// TestBudgetRemeasuresFreeSpace drives a budget with a fake statfs: free
// space is measured again as bytes are written, so space others take
// meanwhile stops the import, and space freed meanwhile lets it go on.
func TestBudgetRemeasuresFreeSpace(t *testing.T) {
	const reserve = 1 << 20
	newBudget := func(avail *int64) *budget {
		b := &budget{dir: "/fake", reserve: reserve, statfs: func(string) (space, error) {
			return space{avail: *avail, size: 1 << 40}, nil
		}}
		if err := b.measure(); err != nil {
			t.Fatal(err)
		}
		return b
	}

	avail := int64(64 << 20)
	b := newBudget(&avail)
	if err := b.add(freeSpaceCheckEvery / 2); err != nil {
		t.Fatal(err)
	}
	avail = reserve + freeSpaceCheckEvery/2 - 10 // another writer took the rest
	err := b.add(freeSpaceCheckEvery / 2)
	if !errors.Is(err, ErrLayerTooLarge) || !strings.Contains(err.Error(), "the free space of /fake") {
		t.Fatalf("space taken meanwhile: want ErrLayerTooLarge naming the free space, got %v", err)
	}

	avail = 1 << 20 // nothing beyond the reserve at the start
	b = newBudget(&avail)
	avail = 64 << 20 // then GC freed some
	if err := b.add(4096); err != nil {
		t.Fatalf("space freed before the refusal: %v", err)
	}

	b = newBudget(&avail)
	b.maxLayer = 4096
	if err := b.add(4096); err != nil {
		t.Fatal(err)
	}
	if err := b.add(1); !errors.Is(err, ErrLayerTooLarge) || !strings.Contains(err.Error(), "after 4096 bytes written, the limit is 4096 bytes (the cache budget)") {
		t.Fatalf("want the cache budget crossed after 4096 bytes, got %v", err)
	}
}

// corruptLayerBlobs flips one byte in the middle of the blob at digest: a
// registry or network that serves other bytes than the digest promises,
// which a correct registry cannot be made to do, so it is faked.
func corruptLayerBlobs(digest string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+digest) {
				next.ServeHTTP(w, r)
				return
			}
			rec := &bufferedResponse{header: http.Header{}}
			next.ServeHTTP(rec, r)
			body := rec.body.Bytes()
			body[len(body)/2] ^= 0xff
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			_, _ = w.Write(body)
		})
	}
}

// TestBrokenBlobsClassified checks that what is wrong with a layer blob
// is told by its sentinel, not left as an unclassified error.
func TestBrokenBlobsClassified(t *testing.T) {
	t.Run("corrupted in transit", func(t *testing.T) {
		for _, c := range []testimage.Compression{testimage.Gzip, testimage.Zstd, testimage.None} {
			t.Run(c.String(), func(t *testing.T) {
				layer := mustLayer(t, c, testimage.File("f", strings.Repeat("0123456789", 10_000)))
				d, _ := layer.Digest()
				img, _ := testimage.Image(layer)
				s := openStore(t, overlay.ModeAuto)
				if err := pullErr(t, s, img, corruptLayerBlobs(d.String())); !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("want ErrDigestMismatch, got %v", err)
				}
				assertEmptyStore(t, s)
			})
		}
	})
	t.Run("not gzip inside", func(t *testing.T) {
		blob := append([]byte{0x1f, 0x8b}, []byte(strings.Repeat("not deflate ", 100))...)
		img, _ := testimage.Image(static.NewLayer(blob, types.OCILayer))
		s := openStore(t, overlay.ModeAuto)
		err := pullErr(t, s, img)
		if !errors.Is(err, ErrCorruptLayer) {
			t.Fatalf("want ErrCorruptLayer, got %v", err)
		}
		assertEmptyStore(t, s)
	})
	t.Run("not a tar", func(t *testing.T) {
		blob := []byte(strings.Repeat("not a tar header ", 100))
		img, _ := testimage.Image(static.NewLayer(blob, types.OCIUncompressedLayer))
		s := openStore(t, overlay.ModeAuto)
		if err := pullErr(t, s, img); !errors.Is(err, ErrCorruptLayer) {
			t.Fatalf("want ErrCorruptLayer, got %v", err)
		}
		assertEmptyStore(t, s)
	})
}
