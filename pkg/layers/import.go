package layers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/source"
)

// Pull resolves ref and imports every layer of the image into the store.
func (s *Store) Pull(ctx context.Context, ref string, opts source.Options) (*source.Image, error) {
	img, err := source.Resolve(ctx, ref, opts)
	if err != nil {
		return nil, err
	}
	if err := s.Import(ctx, img.Layers); err != nil {
		return nil, fmt.Errorf("pull %s: %w", ref, err)
	}
	return img, nil
}

// Import makes sure every layer is in the store: missing ones download and
// extract in parallel, bounded by Options.Parallel, and a layer that another
// caller is already importing is waited for, not fetched twice.
func (s *Store) Import(ctx context.Context, layers []source.Layer) error {
	if w := watchOf(ctx); w != nil {
		w.add(layers)
	}
	var missing []source.Layer
	for _, l := range layers {
		if !s.knownLayer(l.DiffID) {
			missing = append(missing, l)
		}
	}
	// Largest first: the pull takes as long as its largest layer at least,
	// so that one must not wait for a slot behind small ones; the small
	// ones fill the other slots around it.
	slices.SortStableFunc(missing, func(a, b source.Layer) int { return cmp.Compare(b.Size, a.Size) })
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.Parallel)
	for _, l := range missing {
		g.Go(func() error { return s.importLayer(ctx, l) })
	}
	return g.Wait()
}

func (s *Store) importLayer(ctx context.Context, l source.Layer) error {
	name, err := layerDirName(l.DiffID)
	if err != nil {
		return err
	}
	if s.HasLayer(l.DiffID) {
		return nil
	}
	// The import runs detached from any one caller's context, so that a
	// caller who gives up (kubelet's RPC deadline) does not cancel the pull
	// for the retry that joins it.
	ch := s.imports.DoChan(name, func() (any, error) {
		return nil, s.fetchLayer(context.WithoutCancel(ctx), name, l)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("import layer %s: %w", l.DiffID, ctx.Err())
	}
}

// fetchLayer downloads, verifies and extracts one layer into staging and
// renames it into place.
func (s *Store) fetchLayer(ctx context.Context, name string, l source.Layer) (err error) {
	unlock, err := s.lock(shared)
	if err != nil {
		return err
	}
	defer unlock()
	if s.HasLayer(l.DiffID) { // imported by another process meanwhile
		return nil
	}
	log := klog.FromContext(ctx).WithValues("diffID", l.DiffID.String(), "digest", l.Digest.String())
	start := time.Now()

	staging, err := os.MkdirTemp(s.path(stagingDir), name+"-")
	if err != nil {
		return fmt.Errorf("import layer %s: %w", l.DiffID, err)
	}
	defer func() {
		// A no-op once renamed into place; what is left, repair removes.
		if err := os.RemoveAll(staging); err != nil {
			log.Error(err, "Leaving an import's staging directory for the next start", "dir", staging)
		}
	}()

	pull := s.startPull(log, name, l)
	defer func() { s.endPull(pull, err) }()
	meta, err := s.extract(ctx, staging, l, pull)
	if err != nil {
		return fmt.Errorf("import layer %s from %s: %w", l.DiffID, l.Source, s.diskFull(err))
	}
	if err := s.publishLayer(ctx, staging, name, meta); err != nil {
		return fmt.Errorf("import layer %s: %w", l.DiffID, s.diskFull(err))
	}
	log.V(2).Info("Imported layer", "bytes", meta.Size, "entries", meta.Entries, "duration", time.Since(start))
	return nil
}

// extract applies the blob into staging/diff, verifying the compressed
// digest (by the reader Open returns) and the uncompressed digest. pull
// counts the blob's bytes as they are read.
func (s *Store) extract(ctx context.Context, staging string, l source.Layer, pull *layerPull) (meta LayerMeta, err error) {
	meta = LayerMeta{DiffID: l.DiffID.String(), Digest: l.Digest.String(), MediaType: string(l.MediaType), Source: l.Source}
	diff := filepath.Join(staging, diffName)
	if err := os.Mkdir(diff, 0o755); err != nil {
		return meta, err
	}
	b, err := s.newBudget()
	if err != nil {
		return meta, err
	}
	opts, ours, err := b.archiveOptions(s.opts.Archive)
	if err != nil {
		return meta, err
	}
	if lim, _ := b.limit(); lim <= 0 {
		return meta, b.exceeded(nil) // no room for even the tar end marker
	}
	blob, err := l.Open(ctx)
	if err != nil {
		return meta, err
	}
	blob = s.count(pull, blob)
	// The readers' closes are checked on success only: after a failed read
	// they report nothing new (gzip's returns the read error again).
	defer func() {
		if cerr := blob.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close blob %s: %w", l.Digest, cerr)
		}
	}()
	// The readers record their errors, to tell the blob's fault from the
	// decompressor's, and the budget counts what the extractor is handed.
	compressed := &errReader{r: blob}
	tarStream, err := archive.Decompress(compressed)
	if err != nil {
		return meta, classifyInvalid(err, l, compressed)
	}
	defer func() {
		if cerr := tarStream.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close decompressor of blob %s: %w", l.Digest, cerr)
		}
	}()

	// Fetching, the compressed digest and decompression run a few MiB
	// ahead of extraction and the uncompressed digest, on another core.
	// That goroutine writes compressed's error, so it is stopped before
	// classifyExtract reads it (it has stopped by itself after any error
	// it returned).
	ahead := archive.ReadAhead(tarStream, archive.ReadAheadOptions{})
	defer ahead.Close() //nolint:errcheck // always nil; called again after an error
	h := sha256.New()
	uncompressed := &errReader{r: ahead}
	counted := &budgetReader{r: io.TeeReader(uncompressed, h), b: b}
	stats, err := archive.Apply(ctx, diff, counted, opts)
	if err != nil {
		_ = ahead.Close()
		return meta, classifyExtract(err, l, compressed, uncompressed, counted, stats, opts, ours)
	}
	// Drain what the decompressor left and the compressed stream itself:
	// both digests are only checked at EOF.
	if _, err := io.Copy(io.Discard, counted); err != nil { // counted hashes it
		_ = ahead.Close()
		return meta, classifyExtract(err, l, compressed, uncompressed, counted, stats, opts, ours)
	}
	if _, err := io.Copy(io.Discard, compressed); err != nil {
		return meta, classifyExtract(err, l, compressed, uncompressed, counted, stats, opts, ours)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != l.DiffID.String() {
		return meta, fmt.Errorf("%w: uncompressed content is %s, the image config says %s", ErrDigestMismatch, got, l.DiffID)
	}
	meta.Size, meta.Entries, meta.Imported = stats.Bytes, stats.Entries, time.Now().UTC()
	return meta, nil
}

// diskFull says of an error that is the store's filesystem running out of
// space (or its user's quota) which filesystem it is: the free-space
// budget measures only every few MiB, and small files take more of the
// disk than of the tar stream it counts, so the disk can fill first. The
// errno stays wrapped for callers to classify (the node: ResourceExhausted).
func (s *Store) diskFull(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("the filesystem of the layer store %s is full: %w", s.dir, err)
	}
	return err
}

// publishLayer writes the layer's metadata and short id into staging and
// renames it to its final name. The l/ link is reserved before the rename,
// so a visible layer always has one; a crash in between leaves a dangling
// link that repair removes, as does a failure to remove the link when the
// layer is not published.
func (s *Store) publishLayer(ctx context.Context, staging, name string, meta LayerMeta) error {
	b, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(staging, metaName), b, 0o644); err != nil {
		return err
	}
	if err := touchFile(filepath.Join(staging, lastUsedName)); err != nil {
		return err
	}
	id, err := s.reserveLink(name)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(staging, linkName), []byte(id), 0o644); err != nil {
		return errors.Join(err, s.unreserveLink(id))
	}
	if !s.opts.NoSync {
		// Content must be on disk before the name that promises it is.
		if err := syncfs(staging); err != nil {
			return errors.Join(err, s.unreserveLink(id))
		}
	}
	if err := os.Rename(staging, s.path(name)); err != nil {
		if errors.Is(err, os.ErrExist) || errors.Is(err, unix.ENOTEMPTY) {
			// Another process imported the same content first: the layer
			// is there, only our link is left over.
			if err := s.unreserveLink(id); err != nil {
				klog.FromContext(ctx).Error(err, "Leaving a short link for the next start", "id", id)
			}
			return nil
		}
		return errors.Join(err, s.unreserveLink(id))
	}
	return atomicfile.SyncDir(s.dir)
}

// unreserveLink removes the link reserveLink made for a layer that is not
// published after all.
func (s *Store) unreserveLink(id string) error {
	if err := os.Remove(s.path(linkDir, id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove reserved short link %s: %w", id, err)
	}
	return nil
}

func touchFile(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func syncfs(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return errors.Join(fmt.Errorf("syncfs %s: %w", path, err), f.Close())
	}
	return f.Close()
}
