package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"

	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/source"
)

var (
	// ErrLayerTooLarge means importing a layer would write more than the
	// node allows: its cache budget (Options.MaxLayerBytes) or the free
	// space of the store's filesystem less Options.FreeSpaceReserve. The
	// message says how much was written, the limit, and which limit.
	ErrLayerTooLarge = errors.New("layer too large")
	// ErrCorruptLayer means a layer blob that matches its digest is not a
	// valid compressed tar stream: the image itself is broken.
	ErrCorruptLayer = errors.New("corrupt layer")
)

// The default of Options.FreeSpaceReserve: DefaultReservePercent of the
// store filesystem's size, at most DefaultMaxReserve.
const (
	DefaultReservePercent       = 5
	DefaultMaxReserve     int64 = 1 << 30
)

// freeSpaceCheckEvery is how many bytes an import writes between two
// measurements of free space; a measurement is also taken before a layer is
// refused for want of it, in case space was freed meanwhile.
const freeSpaceCheckEvery = 8 << 20

// space is what statfs says of a filesystem, in bytes.
type space struct {
	avail int64 // available to unprivileged users (f_bavail)
	size  int64 // total data blocks (f_blocks)
}

func statSpace(dir string) (space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	unit := st.Frsize // the unit of the block counts, as statvfs(3) takes it
	if unit <= 0 {
		unit = st.Bsize
	}
	return space{avail: int64(st.Bavail) * unit, size: int64(st.Blocks) * unit}, nil
}

// reserveFor is the space to leave free on a filesystem of size bytes, for
// the Options.FreeSpaceReserve opt.
func reserveFor(opt, size int64) int64 {
	switch {
	case opt > 0:
		return opt
	case opt < 0:
		return 0
	}
	return min(size/100*DefaultReservePercent, DefaultMaxReserve)
}

// freeSpaceLimit is the size a layer that has written `written` bytes may
// reach when avail bytes are free and reserve bytes must stay so: what it
// wrote plus what is free beyond the reserve, or what it wrote when nothing
// is (so that the next byte crosses it).
func freeSpaceLimit(written, avail, reserve int64) int64 {
	if avail <= reserve {
		return written
	}
	return written + (avail - reserve)
}

// budget bounds what one layer import writes: by the fixed cache budget and
// by free space, measured at the start and again every freeSpaceCheckEvery
// bytes and before refusing.
type budget struct {
	dir      string // on the store's filesystem
	maxLayer int64  // 0: no cache budget
	reserve  int64
	statfs   func(string) (space, error)

	written   int64 // uncompressed tar bytes handed to the extractor
	avail     int64 // free at the last measurement
	freeLimit int64 // freeSpaceLimit at the last measurement
	nextCheck int64
}

func (s *Store) newBudget() (*budget, error) {
	b := &budget{dir: s.path(stagingDir), maxLayer: max(s.opts.MaxLayerBytes, 0), statfs: statSpace}
	sp, err := b.statfs(b.dir)
	if err != nil {
		return nil, err
	}
	b.reserve = reserveFor(s.opts.FreeSpaceReserve, sp.size)
	b.update(sp)
	return b, nil
}

func (b *budget) update(sp space) {
	b.avail = sp.avail
	b.freeLimit = freeSpaceLimit(b.written, sp.avail, b.reserve)
	b.nextCheck = b.written + freeSpaceCheckEvery
}

func (b *budget) measure() error {
	sp, err := b.statfs(b.dir)
	if err != nil {
		return err
	}
	b.update(sp)
	return nil
}

// limit is the smaller of the two bounds and which one it is.
func (b *budget) limit() (int64, string) {
	if b.maxLayer > 0 && b.maxLayer <= b.freeLimit {
		return b.maxLayer, "the cache budget"
	}
	return b.freeLimit, fmt.Sprintf("the free space of %s: %d bytes available at the last check, %d kept in reserve",
		b.dir, b.avail, b.reserve)
}

// add accounts for n more bytes about to be written; an error wrapping
// ErrLayerTooLarge if they would cross the limit.
func (b *budget) add(n int64) error {
	next := b.written + n
	if lim, _ := b.limit(); next > lim || next >= b.nextCheck {
		if err := b.measure(); err != nil {
			return err
		}
	}
	if lim, _ := b.limit(); next > lim {
		return b.exceeded(nil)
	}
	b.written = next
	return nil
}

// exceeded is the error for a layer over its limit, wrapping cause (the
// extractor's own refusal) if there is one.
func (b *budget) exceeded(cause error) error {
	lim, what := b.limit()
	err := fmt.Errorf("%w: refused after %d bytes written, the limit is %d bytes (%s)", ErrLayerTooLarge, b.written, lim, what)
	if cause != nil {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// archiveOptions are the store's archive options with the budget's limit at
// the start as MaxTotalSize, so that an entry declaring more is refused
// before any of it is written. ours says whether a size refusal of Apply's
// (ErrLimit, not for MaxEntries) is then the budget's: so when the limit is
// below both the size limits already in force.
func (b *budget) archiveOptions(opts archive.Options) (_ archive.Options, ours bool, err error) {
	opts, err = opts.WithDefaults()
	if err != nil {
		return opts, false, err
	}
	if lim, _ := b.limit(); lim > 0 && lim < opts.MaxTotalSize && lim <= opts.MaxFileSize {
		opts.MaxTotalSize = lim
		ours = true
	}
	return opts, ours, nil
}

// budgetReader counts the uncompressed tar stream into a budget: each entry's
// data is read before it is written, so what was read bounds what was
// written, headers and padding included. A read that would cross the limit
// returns none of its bytes.
type budgetReader struct {
	r   io.Reader
	b   *budget
	err error // sticky
}

func (r *budgetReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.r.Read(p)
	if n > 0 {
		if berr := r.b.add(int64(n)); berr != nil {
			r.err = berr
			return 0, berr
		}
	}
	return n, err
}

// errReader remembers the first error other than io.EOF its reader
// returned, and how many bytes it passed on.
type errReader struct {
	r   io.Reader
	n   int64
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// contentError says whether err, which reading a blob returned after read
// bytes of its declared size, is about the blob's content (its digest or
// size does not match its descriptor) rather than about reaching it: the
// reader checks content only once it has seen the declared size, and a
// failure to reach the registry is a network error.
func contentError(err error, read, size int64) bool {
	if read < size || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	var netErr net.Error // syscall.Errno is one too
	return !errors.As(err, &netErr)
}

// classifyExtract gives an error of extracting layer l the sentinel that
// tells its cause. blob and stream are the compressed and uncompressed
// readers, br the budget's; ours is what archiveOptions said.
func classifyExtract(err error, l source.Layer, blob, stream *errReader, br *budgetReader, stats archive.Stats, opts archive.Options, ours bool) error {
	switch {
	case br.err != nil && !errors.Is(err, br.err):
		return errors.Join(br.err, err) // the extractor did not wrap it
	case br.err != nil:
		return err
	case ours && errors.Is(err, archive.ErrLimit) && stats.Entries <= opts.MaxEntries:
		return br.b.exceeded(err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case blob.err != nil:
		if contentError(blob.err, blob.n, l.Size) {
			return fmt.Errorf("%w: blob %s: %w", ErrDigestMismatch, l.Digest, err)
		}
		return err
	case stream.err != nil, errors.Is(err, tar.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
		return classifyInvalid(err, l, blob)
	}
	return err
}

// classifyInvalid tells of err, for a blob that is not a valid compressed
// tar, whether the blob is not what its digest says (ErrDigestMismatch) or
// the image holds a broken layer (ErrCorruptLayer): reading the blob to its
// end makes its reader check.
func classifyInvalid(err error, l source.Layer, blob *errReader) error {
	if blob.err == nil {
		_, _ = io.Copy(io.Discard, blob) // what fails is in blob.err
	}
	switch {
	case blob.err == nil:
		return fmt.Errorf("%w: blob %s matches its digest but is not a valid layer: %w", ErrCorruptLayer, l.Digest, err)
	case contentError(blob.err, blob.n, l.Size):
		return fmt.Errorf("%w: blob %s: %w", ErrDigestMismatch, l.Digest, errors.Join(err, blob.err))
	case errors.Is(err, blob.err):
		return err
	}
	return errors.Join(err, blob.err)
}
