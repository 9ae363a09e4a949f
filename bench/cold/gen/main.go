// Command gen writes and pushes the images of the cold-start benchmark
// (bench/cold/run.sh): one tree of about 2 GiB in 8 layers, as an image with
// gzip layers and one with zstd layers, in one OCI image layout.
//
//	gen write --cache DIR [--scale S]   writes DIR/<version>-scale<S>/ unless it is there, prints its path
//	gen push --layout DIR/oci --registry HOST:PORT --repo NAME
//	                                    pushes the tags gzip and zstd over plain HTTP, prints the refs
//	gen version                         prints the generator version (part of the cache key)
//
// The tree is deterministic: every byte, name and size comes from PRNGs with
// fixed seeds, headers carry a fixed mtime and owner, and each compressor runs
// single-threaded with fixed settings, so the same version and scale always
// give the same digests. Besides the layout the output holds layers.tsv, one
// line per layer (bottom first) with its sizes, file count and blobs.
package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// version changes whenever the tree or its encoding changes: it names the
// cache directory, so a new version regenerates.
const version = "v1"

// Variants are the tags of the layout and of the pushed images.
var variants = []string{"gzip", "zstd"}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "write":
		err = cmdWrite(os.Args[2:])
	case "push":
		err = cmdPush(os.Args[2:])
	case "version":
		fmt.Println(version)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: gen write --cache DIR [--scale S] | gen push --layout DIR --registry HOST:PORT --repo NAME | gen version")
	os.Exit(2)
}

func cmdWrite(args []string) error {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	cache := fs.String("cache", "", "cache directory; the images go to CACHE/<version>-scale<S>")
	scale := fs.Float64("scale", 1, "size factor: 1 is about 2 GiB and 50,000 small files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cache == "" {
		return errors.New("--cache is required")
	}
	if !(*scale >= 0.01 && *scale <= 4) {
		return fmt.Errorf("--scale %g: want 0.01 to 4", *scale)
	}
	key := fmt.Sprintf("%s-scale%g", version, *scale)
	final := filepath.Join(*cache, key)
	if _, err := os.Stat(filepath.Join(final, "complete")); err == nil {
		fmt.Println(final)
		return nil
	}
	if err := os.MkdirAll(*cache, 0o755); err != nil {
		return err
	}
	// Earlier versions' trees, and half-written ones of killed runs, only
	// take space (a full one is about 3.5 GiB).
	old, err := os.ReadDir(*cache)
	if err != nil {
		return err
	}
	for _, e := range old {
		if n := e.Name(); !strings.HasPrefix(n, version+"-") || strings.Contains(n, ".tmp") || n == key {
			if err := os.RemoveAll(filepath.Join(*cache, n)); err != nil {
				return err
			}
		}
	}
	tmp := final + fmt.Sprintf(".tmp%d", os.Getpid())
	t0 := time.Now()
	if err := write(tmp, *scale); err != nil {
		return errors.Join(err, os.RemoveAll(tmp))
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), nil, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "gen: wrote %s in %.1fs\n", final, time.Since(t0).Seconds())
	fmt.Println(final)
	return nil
}

// layerResult is what writing one layer produced.
type layerResult struct {
	name      string
	diffID    v1.Hash
	tarBytes  int64
	fileBytes int64 // regular files' contents
	files     int   // regular files
	entries   int   // every tar entry
	blobs     map[string]v1.Descriptor
}

func write(dir string, scale float64) error {
	blobs := filepath.Join(dir, "oci", "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	specs := layerSpecs(scale)
	results := make([]layerResult, len(specs))
	var g errgroup.Group
	// Two layers at once, biggest first: the weights take most of the time,
	// and our machines have two cores.
	g.SetLimit(2)
	for _, i := range byCost(specs) {
		g.Go(func() error {
			r, err := writeLayer(blobs, specs[i])
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i, specs[i].name, err)
			}
			results[i] = r
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	cfg := v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: modTime},
		Config:       v1.Config{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, WorkingDir: "/app"},
		RootFS:       v1.RootFS{Type: "layers"},
	}
	for _, r := range results {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, r.diffID)
	}
	cfgDesc, err := writeJSON(blobs, types.OCIConfigJSON, cfg)
	if err != nil {
		return err
	}
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, v := range variants {
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: cfgDesc}
		for _, r := range results {
			m.Layers = append(m.Layers, r.blobs[v])
		}
		d, err := writeJSON(blobs, types.OCIManifestSchema1, m)
		if err != nil {
			return err
		}
		d.Annotations = map[string]string{"org.opencontainers.image.ref.name": v}
		idx.Manifests = append(idx.Manifests, d)
	}
	if err := writeFileJSON(filepath.Join(dir, "oci", "index.json"), idx); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "oci", "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}

	var tsv strings.Builder
	fmt.Fprintln(&tsv, "index\tname\tdiff_id\ttar_bytes\tfile_bytes\tfiles\tentries\tgzip_digest\tgzip_bytes\tzstd_digest\tzstd_bytes")
	for i, r := range results {
		fmt.Fprintf(&tsv, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%d\n", i, r.name, r.diffID, r.tarBytes, r.fileBytes, r.files, r.entries,
			r.blobs["gzip"].Digest, r.blobs["gzip"].Size, r.blobs["zstd"].Digest, r.blobs["zstd"].Size)
	}
	return os.WriteFile(filepath.Join(dir, "layers.tsv"), []byte(tsv.String()), 0o644)
}

func byCost(specs []layerSpec) []int {
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	// Insertion sort: eight entries.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && specs[order[j]].cost > specs[order[j-1]].cost; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}

func writeJSON(blobs string, mt types.MediaType, v any) (v1.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if err := os.WriteFile(filepath.Join(blobs, h.Hex), b, 0o644); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: int64(len(b)), Digest: h}, nil
}

func writeFileJSON(p string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}

// blobWriter compresses what it is given into a blob file, hashing and
// counting the compressed bytes.
type blobWriter struct {
	f     *os.File
	buf   *bufio.Writer
	hash  hash.Hash
	n     int64
	close func() error // flushes the compressor
	w     io.Writer    // the compressor's input
}

func (b *blobWriter) Write(p []byte) (int, error) {
	n, err := b.buf.Write(p)
	b.hash.Write(p[:n])
	b.n += int64(n)
	return n, err
}

func newBlob(blobs, variant string) (*blobWriter, error) {
	f, err := os.CreateTemp(blobs, ".partial-"+variant+"-*")
	if err != nil {
		return nil, err
	}
	b := &blobWriter{f: f, buf: bufio.NewWriterSize(f, 1<<20), hash: sha256.New()}
	switch variant {
	case "gzip":
		// The standard library's, as Docker and BuildKit write gzip layers: klauspost's skips
		// entropy coding where it finds no matches, leaving the weights nearly stored, so their
		// decompression would cost nothing.
		zw, err := gzip.NewWriterLevel(b, gzip.DefaultCompression) // zero header: no name, no mtime
		if err != nil {
			return nil, errors.Join(err, f.Close())
		}
		b.w, b.close = zw, zw.Close
	case "zstd":
		zw, err := zstd.NewWriter(b, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
			// Entropy-code literals even where no matches are found, as zstd(1) does: the
			// weights have skewed bytes but few matches.
			zstd.WithAllLitEntropyCompression(true))
		if err != nil {
			return nil, errors.Join(err, f.Close())
		}
		b.w, b.close = zw, zw.Close
	default:
		return nil, errors.Join(fmt.Errorf("unknown variant %q", variant), f.Close())
	}
	return b, nil
}

// finish closes the compressor and renames the blob to its digest.
func (b *blobWriter) finish(blobs string, mt types.MediaType) (v1.Descriptor, error) {
	if err := b.close(); err != nil {
		return v1.Descriptor{}, errors.Join(err, b.f.Close())
	}
	if err := b.buf.Flush(); err != nil {
		return v1.Descriptor{}, errors.Join(err, b.f.Close())
	}
	if err := b.f.Close(); err != nil {
		return v1.Descriptor{}, err
	}
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(b.hash.Sum(nil))}
	if err := os.Rename(b.f.Name(), filepath.Join(blobs, h.Hex)); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mt, Size: b.n, Digest: h}, nil
}

// writeLayer streams the layer's tar into both compressors at once, each in
// its own goroutine behind a pipe, hashing the tar for the diff id.
func writeLayer(blobs string, spec layerSpec) (layerResult, error) {
	res := layerResult{name: spec.name, blobs: map[string]v1.Descriptor{}}
	mediaTypes := map[string]types.MediaType{"gzip": types.OCILayer, "zstd": types.OCILayerZStd}
	var (
		pipes []*io.PipeWriter
		ws    []io.Writer
		g     errgroup.Group
	)
	diff := sha256.New()
	count := &counter{}
	ws = append(ws, diff, count)
	descs := make([]v1.Descriptor, len(variants))
	for i, v := range variants {
		b, err := newBlob(blobs, v)
		if err != nil {
			return res, err
		}
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		ws = append(ws, pw)
		g.Go(func() error {
			if _, err := io.Copy(b.w, pr); err != nil {
				pr.CloseWithError(err)
				return errors.Join(err, b.f.Close(), os.Remove(b.f.Name()))
			}
			d, err := b.finish(blobs, mediaTypes[v])
			descs[i] = d
			return err
		})
	}
	bw := bufio.NewWriterSize(io.MultiWriter(ws...), 256<<10)
	t := newTarWriter(bw)
	err := spec.build(t, newRand(spec.seed))
	if err == nil {
		err = t.close()
	}
	if err == nil {
		err = bw.Flush()
	}
	for _, pw := range pipes {
		pw.CloseWithError(err) // nil: EOF
	}
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
		return res, err
	}
	for i, v := range variants {
		res.blobs[v] = descs[i]
	}
	res.diffID = v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(diff.Sum(nil))}
	res.tarBytes, res.fileBytes, res.files, res.entries = count.n, t.fileBytes, t.files, t.entries
	return res, nil
}

type counter struct{ n int64 }

func (c *counter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

func cmdPush(args []string) error {
	fs := flag.NewFlagSet("push", flag.ExitOnError)
	dir := fs.String("layout", "", "the OCI image layout gen write made (its oci/ directory)")
	reg := fs.String("registry", "", "registry HOST:PORT, reached over plain HTTP")
	repo := fs.String("repo", "bench/cold", "repository to push the tags to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *reg == "" {
		return errors.New("--layout and --registry are required")
	}
	p, err := layout.FromPath(*dir)
	if err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	ctx := context.Background()
	for _, d := range im.Manifests {
		tag := d.Annotations["org.opencontainers.image.ref.name"]
		if tag == "" {
			continue
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		ref, err := name.NewTag(*reg+"/"+*repo+":"+tag, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, remote.WithContext(ctx), remote.WithJobs(4)); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
		fmt.Printf("%s\t%s@%s\n", tag, ref.Context(), d.Digest)
	}
	return nil
}

// --- the tree ---------------------------------------------------------------

// modTime is every entry's mtime.
var modTime = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// tarWriter adds entries, creating each parent directory once, before its
// first child.
type tarWriter struct {
	tw        *tar.Writer
	dirs      map[string]bool
	names     map[string]bool
	buf       []byte
	fileBytes int64
	files     int
	entries   int
}

func newTarWriter(w io.Writer) *tarWriter {
	return &tarWriter{tw: tar.NewWriter(w), dirs: map[string]bool{".": true, "": true}, names: map[string]bool{},
		buf: make([]byte, 1<<20)}
}

func (t *tarWriter) close() error { return t.tw.Close() }

// unique returns p, or p with a numeric suffix before its extension when p is
// taken, so random names never collide.
func (t *tarWriter) unique(p string) string {
	if !t.names[p] && !t.dirs[p] {
		t.names[p] = true
		return p
	}
	ext := path.Ext(p)
	base := strings.TrimSuffix(p, ext)
	for i := 2; ; i++ {
		q := fmt.Sprintf("%s_%d%s", base, i, ext)
		if !t.names[q] && !t.dirs[q] {
			t.names[q] = true
			return q
		}
	}
}

func (t *tarWriter) header(h *tar.Header) error {
	if err := t.mkdirAll(path.Dir(h.Name)); err != nil {
		return err
	}
	h.ModTime = modTime
	h.Uname, h.Gname = "root", "root"
	if h.Typeflag == tar.TypeDir {
		h.Name += "/"
	}
	t.entries++
	return t.tw.WriteHeader(h)
}

func (t *tarWriter) mkdirAll(dir string) error {
	if t.dirs[dir] {
		return nil
	}
	if err := t.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	t.dirs[dir] = true
	return t.header(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755})
}

// file adds a regular file of size bytes that fill writes, a chunk at a time.
func (t *tarWriter) file(p string, mode int64, size int64, fill filler) error {
	if err := t.header(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: mode, Size: size}); err != nil {
		return err
	}
	for left := size; left > 0; {
		n := min(left, int64(len(t.buf)))
		fill(t.buf[:n])
		if _, err := t.tw.Write(t.buf[:n]); err != nil {
			return err
		}
		left -= n
	}
	t.files++
	t.fileBytes += size
	return nil
}

func (t *tarWriter) symlink(p, target string) error {
	return t.header(&tar.Header{Typeflag: tar.TypeSymlink, Name: p, Linkname: target, Mode: 0o777})
}

func (t *tarWriter) hardlink(p, target string) error {
	return t.header(&tar.Header{Typeflag: tar.TypeLink, Name: p, Linkname: target, Mode: 0o755})
}

// filler fills a buffer with one kind of content.
type filler func([]byte)

type rng struct{ *rand.Rand }

func newRand(seed uint64) rng { return rng{rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))} }

// logUniform draws a size between lo and hi, uniform in its logarithm: many
// small, a few large, as in real trees.
func (r rng) logUniform(lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return int64(math.Exp(math.Log(float64(lo)) + r.Float64()*(math.Log(float64(hi))-math.Log(float64(lo)))))
}

// random: incompressible (compressed media, archives).
func (r rng) random() filler {
	return func(b []byte) {
		for i := 0; i < len(b); i += 8 {
			v := r.Uint64()
			for j := i; j < i+8 && j < len(b); j++ {
				b[j] = byte(v)
				v >>= 8
			}
		}
	}
}

// bf16Exponent maps a random byte to the high byte of a bf16 weight: sign
// random, exponent near 2^-3 as in trained weights. About 3.2 bits of
// entropy, so with the random low byte the data compresses to about 70%,
// as real model weights do.
var bf16Exponent = func() [256]byte {
	var t [256]byte
	exps := []struct {
		e byte
		n int
	}{{0x3b, 10}, {0x3c, 24}, {0x3d, 40}, {0x3e, 34}, {0x3f, 16}, {0x3a, 4}}
	i := 0
	for _, x := range exps {
		for k := 0; k < x.n; k++ {
			t[i], t[i+128] = x.e, x.e|0x80
			i++
		}
	}
	return t
}()

// weights: little-endian bf16 values (model weights).
func (r rng) weights() filler {
	return func(b []byte) {
		for i := 0; i+8 <= len(b); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8; j += 2 {
				b[i+j] = byte(v)
				b[i+j+1] = bf16Exponent[byte(v>>8)]
				v >>= 16
			}
		}
		for i := len(b) &^ 7; i < len(b); i++ {
			b[i] = byte(r.Uint32())
		}
	}
}

// machineByte maps a random byte to a byte of machine code or data: zeros and
// a few common opcodes often, the rest rarely.
var machineByte = func() [256]byte {
	var t [256]byte
	common := []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x48, 0x48, 0x89, 0x8b, 0xff, 0xe8, 0x0f, 0x83, 0x24, 0x45, 0xc3, 0x01, 0x74, 0x85}
	for i := range t {
		if i < 128 {
			t[i] = common[i%len(common)]
		} else {
			t[i] = byte(i * 37)
		}
	}
	return t
}()

// binary: executables and libraries — literal runs of skewed bytes and
// copies of earlier bytes, so compressors find both matches and entropy
// (about 40% of the size in gzip).
func (r rng) binary() filler {
	return func(b []byte) {
		for i := 0; i < len(b); {
			v := r.Uint64()
			if i >= 64 && v&3 != 0 && v&4 != 0 { // a copy, 3 in 8
				n := min(int(8+(v>>8)%56), len(b)-i)
				d := 1 + int((v>>16)%uint64(min(i, 8192)))
				for k := 0; k < n; k++ {
					b[i+k] = b[i+k-d]
				}
				i += n
				continue
			}
			n := min(int(1+(v>>8)%20), len(b)-i)
			v = r.Uint64()
			for k := 0; k < n; k++ {
				if k%8 == 0 && k > 0 {
					v = r.Uint64()
				}
				b[i+k] = machineByte[byte(v)]
				v >>= 8
			}
			i += n
		}
	}
}

// vocab is the words of names and text.
var vocab = func() []string {
	r := newRand(42)
	syll := []string{"ka", "to", "ri", "ne", "lo", "mu", "sa", "py", "te", "on", "ar", "ex", "in", "da", "ta", "co", "re", "ma", "li", "st",
		"ch", "ul", "il", "ed", "or", "num", "np", "tf", "io", "ut"}
	w := make([]string, 2048)
	for i := range w {
		var s strings.Builder
		for k := 0; k < 1+r.IntN(4); k++ {
			s.WriteString(syll[r.IntN(len(syll))])
		}
		w[i] = s.String()
	}
	return w
}()

// word picks a word, frequent ones often (Zipf-like: the square of a uniform).
func (r rng) word() string {
	f := r.Float64()
	return vocab[int(f*f*float64(len(vocab)))]
}

// text: Python-like source.
func (r rng) text() filler {
	var pending []byte
	return func(b []byte) {
		i := copy(b, pending)
		pending = pending[i:]
		for i < len(b) {
			line := r.line()
			n := copy(b[i:], line)
			pending = append(pending[:0], line[n:]...)
			i += n
		}
	}
}

func (r rng) line() []byte {
	var s strings.Builder
	s.WriteString(strings.Repeat("    ", r.IntN(4)))
	switch r.IntN(9) {
	case 0:
		fmt.Fprintf(&s, "def %s(self, %s, %s=None):", r.word(), r.word(), r.word())
	case 1:
		fmt.Fprintf(&s, "return %s.%s(%s)", r.word(), r.word(), r.word())
	case 2:
		fmt.Fprintf(&s, "%s = %s(%s, %d)", r.word(), r.word(), r.word(), r.IntN(1000))
	case 3:
		fmt.Fprintf(&s, "# %s %s %s %s %s", r.word(), r.word(), r.word(), r.word(), r.word())
	case 4:
		fmt.Fprintf(&s, "from .%s import %s, %s", r.word(), r.word(), r.word())
	case 5:
		fmt.Fprintf(&s, "class %s(%s):", strings.ToUpper(r.word()[:1])+r.word(), r.word())
	case 6:
		fmt.Fprintf(&s, "if %s is not None and %s > %d:", r.word(), r.word(), r.IntN(100))
	case 7:
		fmt.Fprintf(&s, "raise %sError(\"%s %s: %%s\" %% %s)", r.word(), r.word(), r.word(), r.word())
	case 8:
		fmt.Fprintf(&s, "self.%s = %s.get(%q, %s)", r.word(), r.word(), r.word(), r.word())
	}
	s.WriteByte('\n')
	return []byte(s.String())
}

// layerSpec is one layer: a name, a seed, and what it holds.
type layerSpec struct {
	name  string
	seed  uint64
	cost  float64 // rough bytes, to start the big ones first
	build func(*tarWriter, rng) error
}

func layerSpecs(scale float64) []layerSpec {
	n := func(count int) int { return max(1, int(math.Round(float64(count)*scale))) }
	sz := func(bytes int64) int64 { return max(4096, int64(math.Round(float64(bytes)*scale))) }
	const (
		kiB = 1 << 10
		miB = 1 << 20
	)
	return []layerSpec{
		{name: "base-os", seed: 1, cost: 160 * miB * scale, build: func(t *tarWriter, r rng) error {
			var bins []string
			for i := 0; i < n(300); i++ {
				p := t.unique("usr/bin/" + r.word())
				bins = append(bins, p)
				if err := t.file(p, 0o755, r.logUniform(8*kiB, 1*miB), r.binary()); err != nil {
					return err
				}
			}
			for i := 0; i < n(200); i++ {
				lib := "usr/lib/x86_64-linux-gnu/lib" + r.word() + ".so"
				p := t.unique(fmt.Sprintf("%s.%d.%d.%d", lib, r.IntN(4), r.IntN(20), r.IntN(10)))
				if err := t.file(p, 0o644, r.logUniform(16*kiB, 2*miB), r.binary()); err != nil {
					return err
				}
				if err := t.symlink(t.unique(lib+".1"), path.Base(p)); err != nil {
					return err
				}
			}
			for i := 0; i < n(1500); i++ {
				p := t.unique(fmt.Sprintf("usr/share/doc/%s/%s.txt", vocab[i%97], r.word()))
				if err := t.file(p, 0o644, r.logUniform(200, 40*kiB), r.text()); err != nil {
					return err
				}
			}
			for i := 0; i < n(300); i++ {
				if err := t.file(t.unique("etc/"+r.word()+".conf"), 0o644, r.logUniform(100, 8*kiB), r.text()); err != nil {
					return err
				}
			}
			for i := 0; i < n(1000); i++ {
				if err := t.file(t.unique("var/lib/dpkg/info/"+r.word()+".list"), 0o644, r.logUniform(100, 20*kiB), r.text()); err != nil {
					return err
				}
			}
			for i := 0; i < min(5, len(bins)); i++ {
				if err := t.hardlink(t.unique("usr/sbin/"+r.word()), bins[i]); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "python", seed: 2, cost: 80 * miB * scale, build: func(t *tarWriter, r rng) error {
			const lib = "usr/local/lib/python3.12/"
			if err := t.file("usr/local/bin/python3.12", 0o755, sz(4*miB), r.binary()); err != nil {
				return err
			}
			for _, l := range []string{"python3", "python"} {
				if err := t.symlink("usr/local/bin/"+l, "python3.12"); err != nil {
					return err
				}
			}
			for i := 0; i < n(2000); i++ {
				mod := fmt.Sprintf("%s/%s", vocab[i%61], r.word())
				if err := t.file(t.unique(lib+mod+".py"), 0o644, r.logUniform(200, 100*kiB), r.text()); err != nil {
					return err
				}
				pyc := fmt.Sprintf("%s/__pycache__/%s.cpython-312.pyc", vocab[i%61], r.word())
				if err := t.file(t.unique(lib+pyc), 0o644, r.logUniform(200, 60*kiB), r.binary()); err != nil {
					return err
				}
			}
			for i := 0; i < n(80); i++ {
				p := t.unique(lib + "lib-dynload/" + r.word() + ".cpython-312-x86_64-linux-gnu.so")
				if err := t.file(p, 0o755, r.logUniform(20*kiB, 1*miB), r.binary()); err != nil {
					return err
				}
			}
			return nil
		}},
		// The small files: a site-packages of many packages, nested, sizes
		// 100 B to 16 KiB.
		{name: "site-packages", seed: 3, cost: 160 * miB * scale, build: func(t *tarWriter, r rng) error {
			const sp = "usr/local/lib/python3.12/site-packages/"
			total := n(50000)
			var pkg, sub string
			for i := 0; i < total; {
				if i%80 == 0 {
					pkg = t.unique(sp + r.word())
					dist := pkg + "-" + fmt.Sprintf("%d.%d.%d", r.IntN(3), r.IntN(30), r.IntN(10)) + ".dist-info/"
					for _, f := range []string{"METADATA", "RECORD", "WHEEL"} {
						if i < total {
							if err := t.file(dist+f, 0o644, r.logUniform(100, 16*kiB), r.text()); err != nil {
								return err
							}
							i++
						}
					}
					sub = pkg
				}
				if i%12 == 0 {
					sub = pkg
					for d := r.IntN(3); d > 0; d-- {
						sub += "/" + r.word()
					}
				}
				var (
					p    string
					fill filler
				)
				switch k := r.IntN(20); {
				case k < 14:
					p, fill = sub+"/"+r.word()+".py", r.text()
				case k < 19:
					p, fill = sub+"/__pycache__/"+r.word()+".cpython-312.pyc", r.binary()
				default:
					p, fill = sub+"/"+r.word()+".dat", r.random()
				}
				if err := t.file(t.unique(p), 0o644, r.logUniform(100, 16*kiB), fill); err != nil {
					return err
				}
				i++
			}
			return nil
		}},
		{name: "cuda-libs", seed: 4, cost: 280 * miB * scale, build: func(t *tarWriter, r rng) error {
			const dir = "usr/local/cuda/lib64/"
			for i := 0; i < n(30); i++ {
				lib := dir + "lib" + r.word() + ".so"
				p := t.unique(fmt.Sprintf("%s.12.%d", lib, r.IntN(9)))
				if err := t.file(p, 0o755, r.logUniform(512*kiB, 40*miB), r.binary()); err != nil {
					return err
				}
				if err := t.symlink(t.unique(lib), path.Base(p)); err != nil {
					return err
				}
			}
			for i := 0; i < n(50); i++ {
				if err := t.file(t.unique("usr/local/cuda/include/"+r.word()+".h"), 0o644, r.logUniform(1*kiB, 200*kiB), r.text()); err != nil {
					return err
				}
			}
			return nil
		}},
		{name: "app", seed: 5, cost: 56 * miB * scale, build: func(t *tarWriter, r rng) error {
			for i := 0; i < n(1200); i++ {
				p := t.unique(fmt.Sprintf("app/%s/%s/%s.py", vocab[i%13], vocab[i%7+100], r.word()))
				if err := t.file(p, 0o644, r.logUniform(200, 64*kiB), r.text()); err != nil {
					return err
				}
			}
			for i := 0; i < n(200); i++ {
				p := t.unique(fmt.Sprintf("app/static/%s/%s.png", vocab[i%5], r.word()))
				if err := t.file(p, 0o644, r.logUniform(10*kiB, 1*miB), r.random()); err != nil {
					return err
				}
			}
			for i := 0; i < n(20); i++ {
				if err := t.symlink(t.unique("app/bin/"+r.word()), "../../usr/local/bin/python3"); err != nil {
					return err
				}
			}
			return nil
		}},
		// The model: four shards of bf16 weights, 1.2 GiB in all.
		{name: "model-weights", seed: 6, cost: 1228 * miB * scale, build: func(t *tarWriter, r rng) error {
			const dir = "models/bench-7b/"
			if err := t.file(dir+"config.json", 0o644, 2*kiB, r.text()); err != nil {
				return err
			}
			if err := t.file(dir+"tokenizer.json", 0o644, sz(2*miB), r.text()); err != nil {
				return err
			}
			for i := 1; i <= 4; i++ {
				p := fmt.Sprintf("%smodel-%05d-of-00004.safetensors", dir, i)
				if err := t.file(p, 0o644, sz(306*miB+512*kiB), r.weights()); err != nil {
					return err
				}
			}
			return nil
		}},
		// Configuration over the lower layers: some files replaced, two
		// deleted (whiteouts).
		{name: "config", seed: 7, cost: 0, build: func(t *tarWriter, r rng) error {
			for i := 0; i < 20; i++ {
				if err := t.file(t.unique("etc/app/"+r.word()+".yaml"), 0o644, r.logUniform(100, 4*kiB), r.text()); err != nil {
					return err
				}
			}
			if err := t.file(".wh.root-cache", 0o644, 0, nil); err != nil {
				return err
			}
			return t.file("usr/share/doc/"+vocab[3]+"/.wh."+vocab[5]+".txt", 0o644, 0, nil)
		}},
		{name: "top", seed: 8, cost: 20 * miB * scale, build: func(t *tarWriter, r rng) error {
			for i := 0; i < n(150); i++ {
				fill := r.text()
				ext := ".js"
				if i%3 == 0 {
					fill, ext = r.random(), ".woff2"
				}
				p := t.unique("app/static/dist/" + r.word() + ext)
				if err := t.file(p, 0o644, r.logUniform(1*kiB, 256*kiB), fill); err != nil {
					return err
				}
			}
			// The benchmark checks each contender's tree for this file.
			return t.file("etc/bench-cold-release", 0o644, 64, r.text())
		}},
	}
}
