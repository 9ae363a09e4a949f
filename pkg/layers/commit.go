package layers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// A commit turns a volume's upper (its diff/, never its init layer, which
// is a directory of its own) into a layer of the store, as `docker commit`
// packs a container's upper and not its -init layer. An init file the pod
// wrote to has a copy in the upper; that copy stays out as well (the
// volume's record lists the init paths), so a commit holds nothing the
// node rendered for the volume. One pass over the
// upper writes the layer three ways at once: archive.Pack's tar stream is
// hashed (the diff_id), compressed into a blob that is hashed too (the
// digest), and applied by archive.Apply into a staging layer directory, so
// the stored layer is exactly what the tar says, with no second
// extraction. The layer is then published as an imported one is, and its
// blob kept beside it:
//
//	<diffid hex>/blobs/<digest hex>   the compressed blob a commit made of it
//
// A layer keeps the blobs commits made of it until garbage collection
// removes the layer, so an image of a chain that holds a committed layer
// can always be written (CommitImage): the layer has no registry to fetch
// it from again. A layer that was pulled keeps no blob (it came from a
// registry or layout, where it still is) unless a commit produced the same
// content, whose blob is then kept beside it too.

const (
	blobsDir = "blobs"

	// commitAttempts bounds how often a commit packs the upper again
	// after a file changed while it was streamed (archive.ErrFileChanged):
	// a truncate(2) the read lease could not hold off.
	commitAttempts = 3

	// CommitSourcePrefix starts the LayerMeta.Source of a committed layer:
	// "commit:<volume id>". It names no image the layer could be fetched
	// from again; its blob is kept in the store instead.
	CommitSourcePrefix = "commit:"
)

// Compression of a committed layer's blob.
type Compression string

// The compressions a commit writes.
const (
	Zstd Compression = "zstd"
	Gzip Compression = "gzip"
)

// ParseCompression reads "zstd" or "gzip"; "" means zstd.
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", Zstd:
		return Zstd, nil
	case Gzip:
		return Gzip, nil
	}
	return "", fmt.Errorf("%w: compression %q: want zstd or gzip", ErrInvalid, s)
}

func (c Compression) mediaType() types.MediaType {
	if c == Gzip {
		return types.OCILayer
	}
	return types.OCILayerZStd
}

// CommitOptions say how a volume's upper is packed.
type CommitOptions struct {
	// Compression of the blob; "" means zstd.
	Compression Compression
	// FixedMtime, when set, is every entry's modification time, so that
	// equal content makes equal digests whenever it was written.
	FixedMtime *time.Time
	// Warn is told of each entry or attribute of the upper left out of
	// the layer (see archive.PackOptions.Warn). May be nil.
	Warn func(name, reason string)
}

// Blob is a compressed layer blob the store keeps.
type Blob struct {
	DiffID    v1.Hash
	Digest    v1.Hash
	Size      int64
	MediaType types.MediaType
	// Path is the blob's file. It lasts as long as its layer: take the
	// store's lock or hold a volume on the layer while reading it.
	Path string
}

// Descriptor is the blob's manifest entry.
func (b Blob) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: b.MediaType, Size: b.Size, Digest: b.Digest}
}

// Open opens the blob. The reader checks size and digest as the bytes go
// by: the read that reaches the end fails if they do not match.
func (b Blob) Open() (io.ReadCloser, error) {
	f, err := os.Open(b.Path)
	if err != nil {
		return nil, err
	}
	return &checkedBlob{f: f, want: b, h: sha256.New()}, nil
}

// checkedBlob is a kept blob read back, checked against its name.
type checkedBlob struct {
	f    *os.File
	want Blob
	h    hash.Hash
	n    int64
	err  error
}

func (c *checkedBlob) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.f.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	switch {
	case err == nil:
		return n, nil
	case !errors.Is(err, io.EOF):
		c.err = err
	case c.n != c.want.Size:
		c.err = fmt.Errorf("%w: kept blob %s is %d bytes, want %d", ErrDigestMismatch, c.want.Path, c.n, c.want.Size)
	case hex.EncodeToString(c.h.Sum(nil)) != c.want.Digest.Hex:
		c.err = fmt.Errorf("%w: kept blob %s does not hash to its name", ErrDigestMismatch, c.want.Path)
	default:
		c.err = io.EOF
	}
	return n, c.err
}

func (c *checkedBlob) Close() error { return c.f.Close() }

// CommitResult says what a commit made.
type CommitResult struct {
	VolumeID string
	// Chain is the volume's lower chain, bottom first: the layers the
	// committed one goes on top of (its init layer is not among them).
	Chain []v1.Hash
	// Layer is the committed layer's blob, kept in the store.
	Layer Blob
	// Existed says the store held a layer of this content already: no
	// second copy was published, only the blob kept beside it.
	Existed bool
	// Pack is what packing the upper found.
	Pack archive.PackStats
	// Attempts is how many times the upper was packed (see
	// archive.ErrFileChanged).
	Attempts int
}

// Layers is the chain with the committed layer on top, bottom first: the
// chain of a volume that shows what the committed one shows, less its
// init files.
func (r *CommitResult) Layers() []v1.Hash {
	return append(slices.Clone(r.Chain), r.Layer.DiffID)
}

// Commit packs the upper of volume id into a layer of the store and keeps
// its compressed blob (see the package comment on commits). The volume
// may be mounted and its pod writing: what a commit of a live upper
// guarantees is archive.Pack's (each file as of one moment, never a mix;
// not a point-in-time view of the whole tree). A volume whose upper lives
// in a filesystem image that is not mounted (a kept persistent volume, not
// staged) has it mounted for the commit and unmounted after. Calls for one
// volume must not overlap its Mount or Unmount.
func (s *Store) Commit(ctx context.Context, id string, opts CommitOptions) (*CommitResult, error) {
	comp, err := ParseCompression(string(opts.Compression))
	if err != nil {
		return nil, err
	}
	unlock, err := s.lock(shared)
	if err != nil {
		return nil, err
	}
	defer unlock()
	vol, err := s.Volume(id)
	if err != nil {
		return nil, err
	}
	res := &CommitResult{VolumeID: id, Chain: make([]v1.Hash, len(vol.Layers))}
	for i, l := range vol.Layers {
		if res.Chain[i], err = v1.NewHash(l); err != nil {
			return nil, fmt.Errorf("volume %q: record names layer %q: %w", id, l, err)
		}
	}
	upper, release, err := s.readyUpper(ctx, vol)
	if err != nil {
		return nil, fmt.Errorf("commit volume %q: %w", id, err)
	}
	defer func() {
		if err := release(); err != nil {
			klog.FromContext(ctx).Error(err, "Leaving a volume's image mounted after a commit", "volumeID", id)
		}
	}()
	// An init file the pod wrote to was copied up into the upper: it is
	// still the node's, rendered for this volume, and stays out too.
	initFiles := make(map[string]bool, len(vol.InitFiles))
	for _, f := range vol.InitFiles {
		initFiles[f] = true
	}
	popts := archive.PackOptions{
		MaxEntries:   s.opts.Archive.MaxEntries,
		MaxFileSize:  s.opts.Archive.MaxFileSize,
		MaxTotalSize: s.opts.Archive.MaxTotalSize,
		FixedMtime:   opts.FixedMtime,
		SpoolDir:     s.path(stagingDir),
		Exclude:      func(name string) bool { return initFiles[name] },
		Warn:         opts.Warn,
	}
	log := klog.FromContext(ctx).WithValues("volumeID", id)
	start := time.Now()
	for res.Attempts = 1; ; res.Attempts++ {
		err = s.commitOnce(ctx, upper, comp, popts, res)
		if err == nil || !errors.Is(err, archive.ErrFileChanged) || res.Attempts == commitAttempts {
			break
		}
		log.Info("A file changed while the volume was committed; packing it again", "attempt", res.Attempts, "err", err)
	}
	if err != nil {
		return nil, fmt.Errorf("commit volume %q: %w", id, s.diskFull(err))
	}
	log.V(2).Info("Committed volume", "diffID", res.Layer.DiffID, "digest", res.Layer.Digest, "bytes", res.Layer.Size,
		"entries", res.Pack.Entries, "existed", res.Existed, "duration", time.Since(start))
	return res, nil
}

// readyUpper returns the volume's upper directory, mounting its image
// first when the volume has one that is not mounted; release undoes that.
func (s *Store) readyUpper(ctx context.Context, vol *Volume) (upper string, release func() error, err error) {
	release = func() error { return nil }
	upper = vol.UpperDir()
	if vol.Limit != nil && vol.Limit.Method == quota.MethodImage {
		mounted := false
		if vol.Target != "" {
			if mounted, err = overlay.IsMounted(vol.Target); err != nil {
				return "", nil, err
			}
		}
		if !mounted {
			img, mnt := filepath.Join(vol.Dir, quota.ImageFile), filepath.Join(vol.Dir, quota.ImageMount)
			if err := quota.MountImage(ctx, img, mnt); err != nil {
				return "", nil, err
			}
			release = func() error { return quota.UnmountImage(ctx, img, mnt) }
		}
	}
	if fi, err := os.Lstat(upper); err != nil || !fi.IsDir() {
		return "", nil, errors.Join(fmt.Errorf("the volume's upper %s is not a directory", upper), err, release())
	}
	return upper, release, nil
}

// commitOnce packs the upper once, into a staging layer and a blob, and
// publishes them.
func (s *Store) commitOnce(ctx context.Context, upper string, comp Compression, popts archive.PackOptions, res *CommitResult) (err error) {
	staging, err := os.MkdirTemp(s.path(stagingDir), "commit-")
	if err != nil {
		return err
	}
	defer func() {
		// Gone once published; what is left, repair removes.
		if err := os.RemoveAll(staging); err != nil {
			klog.FromContext(ctx).Error(err, "Leaving a commit's staging directory for the next start", "dir", staging)
		}
	}()
	diff := filepath.Join(staging, diffName)
	for _, d := range []string{diff, filepath.Join(staging, blobsDir)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	tmpBlob := filepath.Join(staging, blobsDir, ".partial")
	blob, err := os.OpenFile(tmpBlob, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeOnce(blob)) }()

	w, err := s.newLayerWriter(ctx, diff, blob, comp)
	if err != nil {
		return err
	}
	stats, perr := archive.Pack(ctx, upper, w.tar, popts)
	meta, err := w.finish(perr)
	if err != nil {
		return err
	}
	res.Pack = stats
	if !s.opts.NoSync {
		if err := blob.Sync(); err != nil {
			return err
		}
	}
	if err := closeOnce(blob); err != nil {
		return err
	}
	digest, diffID := w.digest(), w.diffID()
	if err := os.Rename(tmpBlob, filepath.Join(staging, blobsDir, digest.Hex)); err != nil {
		return err
	}
	meta.DiffID, meta.Digest, meta.MediaType = diffID.String(), digest.String(), string(comp.mediaType())
	meta.Source = CommitSourcePrefix + res.VolumeID
	meta.Size += w.blobSize // the kept blob is on disk too, and goes with the layer
	res.Layer = Blob{DiffID: diffID, Digest: digest, Size: w.blobSize, MediaType: comp.mediaType()}

	name, err := layerDirName(diffID)
	if err != nil {
		return err
	}
	res.Existed = s.HasLayer(diffID)
	if !res.Existed {
		if err := s.publishLayer(ctx, staging, name, meta); err != nil {
			return err
		}
		// publishLayer leaves staging where it is when another process
		// published the same content first.
		if _, err := os.Lstat(staging); errors.Is(err, fs.ErrNotExist) {
			res.Layer.Path = s.path(name, blobsDir, digest.Hex)
			return nil
		}
		res.Existed = true
	}
	res.Layer.Path, err = s.keepBlob(name, filepath.Join(staging, blobsDir, digest.Hex), digest)
	return err
}

// Hold runs f while garbage collection, in this process or another, can
// remove no layer: for writing the image of a commit (CommitImage), whose
// blobs are read as it is written. f must not call GC, nor anything that
// waits for it.
func (s *Store) Hold(f func() error) error {
	unlock, err := s.lock(shared)
	if err != nil {
		return err
	}
	defer unlock()
	return f()
}

// keepBlob moves a blob into the blobs of stored layer name, unless one of
// that digest is there already, and returns its path there.
func (s *Store) keepBlob(name, path string, digest v1.Hash) (string, error) {
	dir := s.path(name, blobsDir)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	dst := filepath.Join(dir, digest.Hex)
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	if s.opts.NoSync {
		return dst, nil
	}
	return dst, atomicfile.SyncDir(dir)
}

// LayerBlob returns a blob the store keeps of the layer diffID: one a
// commit made. An error wrapping fs.ErrNotExist means it keeps none (the
// layer was pulled, and is to be fetched from LayerMeta.Source).
func (s *Store) LayerBlob(diffID v1.Hash) (Blob, error) {
	name, err := layerDirName(diffID)
	if err != nil {
		return Blob{}, err
	}
	entries, err := os.ReadDir(s.path(name, blobsDir))
	if err != nil {
		return Blob{}, fmt.Errorf("layer %s: no kept blob: %w", diffID, err)
	}
	for _, e := range entries { // sorted by name: the same one every time
		if !e.Type().IsRegular() || !isLayerDirName(e.Name()) {
			continue
		}
		b := Blob{DiffID: diffID, Digest: v1.Hash{Algorithm: "sha256", Hex: e.Name()}, Path: s.path(name, blobsDir, e.Name())}
		if b.Size, b.MediaType, err = sniffBlob(b.Path); err != nil {
			return Blob{}, fmt.Errorf("layer %s: kept blob %s: %w", diffID, e.Name(), err)
		}
		return b, nil
	}
	return Blob{}, fmt.Errorf("layer %s: no kept blob: %w", diffID, fs.ErrNotExist)
}

// LayerMeta returns what the store records of layer diffID.
func (s *Store) LayerMeta(diffID v1.Hash) (LayerMeta, error) {
	name, err := layerDirName(diffID)
	if err != nil {
		return LayerMeta{}, err
	}
	m, err := s.readMeta(name)
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%w: %s", ErrLayerMissing, diffID)
	}
	return m, err
}

// sniffBlob tells a kept blob's size and, by its magic bytes, media type.
func sniffBlob(path string) (int64, types.MediaType, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = f.Close() }() // read only
	fi, err := f.Stat()
	if err != nil {
		return 0, "", err
	}
	magic := make([]byte, 4)
	n, err := io.ReadFull(f, magic)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, "", err
	}
	switch magic = magic[:n]; {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return fi.Size(), types.OCILayerZStd, nil
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return fi.Size(), types.OCILayer, nil
	}
	return fi.Size(), types.OCIUncompressedLayer, nil
}

// layerWriter takes the tar stream of a commit and, in one pass, hashes
// it, compresses it into the blob (hashed too) and applies it into the
// staging layer, in another goroutine through a pipe.
type layerWriter struct {
	tar      io.Writer
	diffH    hash.Hash
	blobH    hash.Hash
	blobSize int64
	comp     io.WriteCloser
	pw       *io.PipeWriter
	applied  chan applyResult
	budget   *budgetReader
	opts     archive.Options
	ours     bool
}

type applyResult struct {
	stats archive.Stats
	err   error
}

func (s *Store) newLayerWriter(ctx context.Context, diff string, blob io.Writer, comp Compression) (*layerWriter, error) {
	b, err := s.newBudget()
	if err != nil {
		return nil, err
	}
	aopts, ours, err := b.archiveOptions(s.opts.Archive)
	if err != nil {
		return nil, err
	}
	w := &layerWriter{diffH: sha256.New(), blobH: sha256.New(), applied: make(chan applyResult, 1), opts: aopts, ours: ours}
	compressed := io.MultiWriter(blob, w.blobH, (*counter)(&w.blobSize))
	switch comp {
	case Gzip:
		w.comp, err = gzip.NewWriterLevel(compressed, gzip.DefaultCompression)
	default:
		// Two encoders: one compresses a block while the next is read.
		// The output does not depend on the number.
		w.comp, err = zstd.NewWriter(compressed, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2))
	}
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	w.pw = pw
	w.budget = &budgetReader{r: pr, b: b}
	go func() {
		st, err := archive.Apply(ctx, diff, w.budget, aopts)
		// Apply reads to the end on success; on failure the pack's next
		// write fails with its error.
		pr.CloseWithError(err)
		w.applied <- applyResult{st, err}
	}()
	w.tar = io.MultiWriter(w.diffH, w.comp, pw)
	return w, nil
}

// finish ends the streams after Pack returned perr, waits for Apply and
// returns the layer's metadata (Size, Entries, Imported), or the error
// that stopped it: Apply's when it failed first, since Pack's is then only
// the closed pipe.
func (w *layerWriter) finish(perr error) (LayerMeta, error) {
	w.pw.CloseWithError(perr)
	r := <-w.applied
	cerr := w.comp.Close()
	switch {
	case w.budget.err != nil:
		return LayerMeta{}, w.budget.err
	case w.ours && errors.Is(r.err, archive.ErrLimit) && r.stats.Entries <= w.opts.MaxEntries:
		return LayerMeta{}, w.budget.b.exceeded(r.err)
	case r.err != nil && (perr == nil || errors.Is(perr, io.ErrClosedPipe) || errors.Is(perr, r.err)):
		return LayerMeta{}, fmt.Errorf("storing the committed layer: %w", r.err)
	case perr != nil:
		return LayerMeta{}, perr
	case r.err != nil:
		return LayerMeta{}, r.err
	case cerr != nil:
		return LayerMeta{}, fmt.Errorf("compressing the committed layer: %w", cerr)
	}
	return LayerMeta{Size: r.stats.Bytes, Entries: r.stats.Entries, Imported: time.Now().UTC()}, nil
}

func (w *layerWriter) diffID() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.diffH.Sum(nil))}
}

func (w *layerWriter) digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(w.blobH.Sum(nil))}
}

// counter counts what is written to it.
type counter int64

func (c *counter) Write(p []byte) (int, error) {
	*c += counter(len(p))
	return len(p), nil
}

// closeOnce closes f, and is a no-op when it was closed already.
func closeOnce(f *os.File) error {
	if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
