package layers

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/pkg/archive"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
)

const (
	storeDir   = "overlay2"
	linkDir    = "l"
	stagingDir = ".staging"
	trashDir   = ".trash"
	lockFile   = ".lock"

	diffName   = "diff"
	workName   = "work"
	mergedName = "merged"
	linkName   = "link"
	lowerName  = "lower"

	defaultParallel = 4
)

// Options configure a Store.
type Options struct {
	// Root is the state directory; the store lives in Root/overlay2.
	Root string
	// Parallel bounds how many layers of one chain download and extract at
	// once. Zero means 4.
	Parallel int
	// MountMode chooses how overlayfs is mounted; the zero value picks the
	// per-layer lowerdir+ API when the kernel has it. Open probes the
	// kernel once and keeps the mode it settles on.
	MountMode overlay.Mode
	// Archive bounds what a layer tarball may contain.
	Archive archive.Options
	// MaxLayerBytes bounds what importing one layer may write, counted as
	// its uncompressed tar stream (file data plus each entry's 512-byte
	// header and padding): the node sets it to its cache budget, which a
	// larger layer could never fit. An import stops as soon as it is
	// crossed and fails with ErrLayerTooLarge. Zero (or less) means only
	// free space bounds a layer.
	MaxLayerBytes int64
	// FreeSpaceReserve is the space imports leave free on the store's
	// filesystem: a layer is refused (ErrLayerTooLarge) once writing it
	// would leave less. Free space is measured when an import starts and
	// again as it writes. Zero means DefaultReservePercent (5) percent of
	// the filesystem's size, at most DefaultMaxReserve (1 GiB); negative
	// means no reserve.
	FreeSpaceReserve int64
	// NoSync skips the syncfs(2) that makes an imported layer durable before
	// it becomes visible. Only for benchmarks and throwaway stores.
	NoSync bool
	// Spares bounds how many removed volumes' emptied directories are kept
	// for new volumes to reuse. Zero means 32; negative keeps none.
	Spares int
	// Quota says how volumes with a size are limited; its Dir is the
	// store's. The zero value ignores sizes.
	Quota quota.Options
	// ProgressInterval is how often the import of a layer logs how far it
	// got, once the first interval has passed (so quick imports log
	// nothing), and once more at its end. Zero means
	// DefaultProgressInterval (5s); negative never logs.
	ProgressInterval time.Duration
}

// Store is a layer store rooted at one directory. It is safe for concurrent
// use; calls for the same volume must be serialized by the caller.
type Store struct {
	opts Options
	dir  string // Root/overlay2

	// mu orders garbage collection (exclusive) against imports and mounts
	// in this process; flock on flockFile does the same across processes,
	// held shared while sharers > 0 (see lock).
	mu        sync.RWMutex
	flockFile *os.File

	limits   *quota.Limiter
	sharedMu sync.Mutex
	sharers  int
	imports  singleflight.Group
	pulls    pullTracker // the imports in flight, and totals
	// links caches layer directory name -> short id. A layer keeps its id
	// for as long as it exists; GC forgets the ids of layers it removes.
	links sync.Map
	// chains caches what mounts derive from a chain (see chainCache);
	// every exclusive lock, which layers are removed under, forgets it.
	chains chainCache

	spareMu sync.Mutex
	spares  []skeleton
}

// Open opens or creates the store under opts.Root and repairs what an
// interrupted process left behind.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Root == "" || !filepath.IsAbs(opts.Root) {
		return nil, fmt.Errorf("%w: store root %q must be an absolute path", ErrInvalid, opts.Root)
	}
	if opts.Parallel <= 0 {
		opts.Parallel = defaultParallel
	}
	switch {
	case opts.Spares == 0:
		opts.Spares = defaultSpares
	case opts.Spares < 0:
		opts.Spares = 0
	}
	// The kernel's overlayfs is probed once, here, not at every mount.
	mode, err := overlay.Resolve(opts.MountMode)
	if err != nil {
		return nil, fmt.Errorf("open store: mount mode %s: %w", opts.MountMode, err)
	}
	opts.MountMode = mode
	s := &Store{opts: opts, dir: filepath.Join(opts.Root, storeDir), chains: newChainCache()}
	for _, d := range []string{s.dir, s.path(linkDir), s.path(stagingDir), s.path(trashDir), s.path(spareDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
	}
	// Lowers are reached through l/, so the store root itself must be
	// searchable by unprivileged container processes.
	if err := os.Chmod(s.dir, 0o711); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	// The descriptor lives as long as the Store; the runtime closes it
	// when the Store is collected.
	lf, err := os.OpenFile(s.path(lockFile), os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store lock: %w", err)
	}
	s.flockFile = lf
	unlock, err := s.lock(exclusive)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.repair(ctx); err != nil {
		return nil, fmt.Errorf("repair store %s: %w", s.dir, err)
	}
	if err := s.openLimits(ctx); err != nil {
		return nil, fmt.Errorf("open store %s: %w", s.dir, err)
	}
	return s, nil
}

// Dir returns the overlay2 directory of the store.
func (s *Store) Dir() string { return s.dir }

// Root is the state directory the store was opened under (Options.Root).
func (s *Store) Root() string { return s.opts.Root }

func (s *Store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// lockMode says how the store lock is taken.
type lockMode int

const (
	shared lockMode = iota
	exclusive
)

// lock takes the store lock, shared for imports and mounts, exclusive for
// garbage collection and repair, in this process and across processes.
// Within the process mu does the ordering; the flock on .lock, which is
// per open file, is taken shared by the first of this process's holders
// and dropped by the last, so an operation costs no open(2) of its own.
func (s *Store) lock(mode lockMode) (unlock func(), err error) {
	fd := int(s.flockFile.Fd())
	if mode == exclusive {
		s.mu.Lock()
		if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("lock store: %w", err)
		}
		s.chains.invalidate()
		return func() {
			_ = unix.Flock(fd, unix.LOCK_UN)
			s.mu.Unlock()
		}, nil
	}
	s.mu.RLock()
	s.sharedMu.Lock()
	defer s.sharedMu.Unlock()
	if s.sharers == 0 {
		if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
			s.mu.RUnlock()
			return nil, fmt.Errorf("lock store: %w", err)
		}
	}
	s.sharers++
	return func() {
		s.sharedMu.Lock()
		if s.sharers--; s.sharers == 0 {
			_ = unix.Flock(fd, unix.LOCK_UN)
		}
		s.sharedMu.Unlock()
		s.mu.RUnlock()
	}, nil
}

// removeAll moves dir into the trash with one rename, so it disappears
// atomically, then deletes it. A crash mid-delete leaves only trash, which
// Open empties.
func (s *Store) removeAll(ctx context.Context, dir string) error {
	tmp, err := os.MkdirTemp(s.path(trashDir), filepath.Base(dir)+"-")
	if err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	dst := filepath.Join(tmp, "x")
	if err := os.Rename(dir, dst); err != nil {
		rmErr := os.Remove(tmp)
		if os.IsNotExist(err) {
			if rmErr != nil {
				klog.FromContext(ctx).Error(rmErr, "Leaving trash for the next start", "path", tmp)
			}
			return nil
		}
		return errors.Join(fmt.Errorf("remove %s: %w", dir, err), rmErr)
	}
	if err := os.RemoveAll(tmp); err != nil {
		klog.FromContext(ctx).Error(err, "Leaving trash for the next start", "path", tmp)
	}
	return nil
}
