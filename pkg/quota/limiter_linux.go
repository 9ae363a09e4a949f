package quota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"k8s.io/klog/v2"
)

// Limiter gives volumes their limits by the method the node settled on
// when it opened. It is safe for concurrent use.
type Limiter struct {
	opts Options
	// method is what new sized volumes get; empty when sizes are ignored
	// (ModeOff) or refused (ModeProject without support: refusal says why).
	method  Method
	refusal error

	mu   sync.Mutex
	used map[uint32]string // project id → volume directory
}

// Open probes Dir once and settles on a method.
func Open(ctx context.Context, opts Options) (*Limiter, error) {
	if opts.ProjectIDs == (IDRange{}) {
		opts.ProjectIDs = DefaultIDRange
	}
	if opts.Image.Mkfs == "" {
		opts.Image.Mkfs = "mkfs.ext4"
	}
	l := &Limiter{opts: opts, used: map[uint32]string{}}
	log := klog.FromContext(ctx)
	switch opts.Mode {
	case ModeOff:
		log.Info("Volume sizes are not enforced", "quota", opts.Mode)
		return l, nil
	case ModeFallback:
		l.method = MethodImage
	case ModeProject, ModeAuto:
		err := ProbeProject(opts.Dir)
		switch {
		case err == nil:
			l.method = MethodProject
		case opts.Mode == ModeProject:
			l.refusal = fmt.Errorf("--quota=project: %w", err)
		default:
			log.Info("No project quotas: sized volumes get a filesystem image each", "dir", opts.Dir, "reason", err.Error())
			l.method = MethodImage
		}
	default:
		return nil, fmt.Errorf("quota mode %q is not one of auto, project, fallback, off", opts.Mode)
	}
	if l.refusal != nil {
		log.Info("Sized volumes are refused", "quota", opts.Mode, "dir", opts.Dir, "reason", l.refusal.Error())
		return l, nil
	}
	log.Info("Volume sizes are enforced", "quota", opts.Mode, "method", l.method, "dir", opts.Dir)
	return l, nil
}

// Method is what new sized volumes get: "project", "image", or "" when
// sizes are ignored or refused.
func (l *Limiter) Method() Method { return l.method }

// Enforced reports whether sized volumes are limited; when they are
// refused, the error says why.
func (l *Limiter) Enforced() (bool, error) { return l.method != "", l.refusal }

// Adopt claims the project id of an existing volume, as its record tells
// at start, so it is never handed out again while the volume lives.
func (l *Limiter) Adopt(volDir string, lim *Limit) error {
	if lim == nil || lim.Method != MethodProject {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if other, ok := l.used[lim.Project]; ok && other != volDir {
		return fmt.Errorf("project id %d is recorded for both %s and %s", lim.Project, other, volDir)
	}
	l.used[lim.Project] = volDir
	return nil
}

// Create gives a new volume, whose directory volDir holds empty diff/ and
// work/ directories, a limit of bytes. It returns (nil, nil) when sizes
// are ignored.
func (l *Limiter) Create(ctx context.Context, volDir string, bytes int64) (*Limit, error) {
	if err := checkLimit(bytes); err != nil {
		return nil, err
	}
	if l.refusal != nil {
		return nil, l.refusal
	}
	switch l.method {
	case MethodProject:
		id, err := l.allocate(volDir)
		if err != nil {
			return nil, err
		}
		lim := &Limit{Bytes: bytes, Method: MethodProject, Project: id}
		for _, sub := range []string{"diff", "work"} {
			if err = SetProject(filepath.Join(volDir, sub), id); err != nil {
				break
			}
		}
		if err == nil {
			err = SetProjectLimit(volDir, id, bytes)
		}
		if err != nil {
			l.free(id)
			return nil, err
		}
		return lim, nil
	case MethodImage:
		if err := CreateImage(ctx, l.opts.Image, filepath.Join(volDir, ImageFile), bytes); err != nil {
			return nil, err
		}
		return &Limit{Bytes: bytes, Method: MethodImage}, nil
	}
	return nil, nil
}

// allocate finds a project id no volume of ours has and nothing on the
// filesystem is charged to: an id in use by someone else is never shared.
func (l *Limiter) allocate(volDir string) (uint32, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.opts.ProjectIDs
	for id := r.First; ; id++ {
		if _, taken := l.used[id]; !taken {
			u, err := ProjectUsage(l.opts.Dir, id)
			if err != nil {
				return 0, err
			}
			if u.Bytes == 0 && u.Inodes == 0 && u.Limit == 0 {
				l.used[id] = volDir
				return id, nil
			}
		}
		if id == r.Last {
			return 0, fmt.Errorf("every project id in %s is in use", r)
		}
	}
}

func (l *Limiter) free(id uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.used, id)
}

// Activate readies a volume's limit before its overlay is mounted: an
// image is mounted (after a restart or a reboot) and its upper and work
// directories made; a project id is checked still to be the volume's.
func (l *Limiter) Activate(ctx context.Context, volDir string, lim *Limit) error {
	if lim == nil {
		return nil
	}
	switch lim.Method {
	case MethodImage:
		path, mnt := filepath.Join(volDir, ImageFile), filepath.Join(volDir, ImageMount)
		if err := mkdirOwn(mnt); err != nil {
			return err
		}
		if err := MountImage(ctx, path, mnt); err != nil {
			return err
		}
		for _, sub := range []string{"diff", "work"} {
			if err := mkdirOwn(filepath.Join(mnt, sub)); err != nil {
				return err
			}
		}
		return SetImageLimit(ctx, path, mnt, lim.Bytes)
	case MethodProject:
		id, err := ProjectOf(filepath.Join(volDir, "diff"))
		if err != nil {
			return err
		}
		if id != lim.Project {
			return fmt.Errorf("the upper of %s has project id %d, its record says %d", volDir, id, lim.Project)
		}
		// Set again, idempotently: the record is what the limit is, whatever
		// happened to the filesystem's quota file meanwhile.
		return SetProjectLimit(volDir, id, lim.Bytes)
	}
	return fmt.Errorf("volume %s: unknown limit method %q", volDir, lim.Method)
}

// Deactivate undoes Activate once the overlay is unmounted and the upper
// is kept: an image is unmounted, which frees its loop device.
func (l *Limiter) Deactivate(ctx context.Context, volDir string, lim *Limit) error {
	if lim == nil || lim.Method != MethodImage {
		return nil
	}
	return UnmountImage(ctx, filepath.Join(volDir, ImageFile), filepath.Join(volDir, ImageMount))
}

// Release ends a volume's limit before its directories are removed: the
// image is unmounted, the project limit removed and its id freed.
func (l *Limiter) Release(ctx context.Context, volDir string, lim *Limit) error {
	if lim == nil {
		return nil
	}
	switch lim.Method {
	case MethodImage:
		return l.Deactivate(ctx, volDir, lim)
	case MethodProject:
		if err := SetProjectLimit(volDir, lim.Project, 0); err != nil {
			return err
		}
		l.free(lim.Project)
	}
	return nil
}

// Resize raises a live volume's limit to bytes; a smaller limit is
// ErrShrink.
func (l *Limiter) Resize(ctx context.Context, volDir string, lim *Limit, bytes int64) (*Limit, error) {
	if err := checkLimit(bytes); err != nil {
		return nil, err
	}
	if bytes < lim.Bytes {
		return nil, fmt.Errorf("%w: from %d to %d bytes", ErrShrink, lim.Bytes, bytes)
	}
	next := *lim
	next.Bytes = bytes
	switch lim.Method {
	case MethodImage:
		mnt := filepath.Join(volDir, ImageMount)
		if err := SetImageLimit(ctx, filepath.Join(volDir, ImageFile), mnt, bytes); err != nil {
			return nil, err
		}
	case MethodProject:
		if err := SetProjectLimit(volDir, lim.Project, bytes); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("volume %s: unknown limit method %q", volDir, lim.Method)
	}
	return &next, nil
}

// Usage is what the volume holds against its limit, read from the quota
// or the image's filesystem: no walk of the tree.
func (l *Limiter) Usage(ctx context.Context, volDir string, lim *Limit) (Usage, error) {
	switch lim.Method {
	case MethodImage:
		u, err := ImageUsage(filepath.Join(volDir, ImageMount))
		if err == nil {
			u.Limit = lim.Bytes
		}
		return u, err
	case MethodProject:
		u, err := ProjectUsage(volDir, lim.Project)
		if err == nil {
			u.Limit = lim.Bytes
		}
		return u, err
	}
	return Usage{}, errors.New("unknown limit method " + string(lim.Method))
}

// mkdirOwn makes dir, or accepts it as it is when it is a directory: never
// a symlink left in its place.
func mkdirOwn(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		fi, lerr := os.Lstat(dir)
		if lerr != nil {
			return lerr
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	return err
}
