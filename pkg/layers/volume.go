package layers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
	"github.com/layerset/layerset-csi/pkg/volumeid"
)

const (
	volumePrefix = "vol-"
	initSuffix   = "-init"
	recordName   = "volume.json"
)

// VolumeSpec says what to compose and where to mount it.
type VolumeSpec struct {
	// ID names the volume; the same id finds the same upper again.
	ID string
	// Layers is the read-only chain by uncompressed digest, bottom first.
	Layers []v1.Hash
	// Init are the files of the volume's own init layer, which sits between
	// the chain and the upper and is never shared.
	Init []InitFile
	// ReadOnly mounts without a writable upper.
	ReadOnly bool
	// Target is where to mount; empty means the volume's merged/ directory.
	Target string
	// Ephemeral volumes cannot outlive a reboot, so their metadata is
	// written atomically (temp, rename) but not synced: a pod start does
	// not wait for the disk. Persistent volumes' metadata is synced.
	Ephemeral bool
	// Flags are the mount's attributes (nosuid, nodev, noexec, ...), as
	// the caller decided them; the zero value sets none.
	Flags overlay.Flags
	// Size limits what the upper may hold, in bytes; zero means no limit.
	// It is set when the volume is made; a larger size on a later Mount
	// raises the limit, a smaller one is ignored.
	Size int64
}

// Volume is the record the store keeps for a volume, in <vol>/volume.json.
type Volume struct {
	ID       string    `json:"id"`
	Layers   []string  `json:"layers"` // bottom first
	ReadOnly bool      `json:"readOnly"`
	Target   string    `json:"target"`
	Created  time.Time `json:"created"`
	// InitFiles are the paths of the init layer's files; never null when
	// written, so a record from before the field reads as "not known".
	InitFiles []string `json:"initFiles"`
	// Flags are the attributes the volume is mounted with.
	Flags overlay.Flags `json:"flags"`
	// Limit is the upper's size limit; nil when it has none.
	Limit *quota.Limit `json:"limit,omitempty"`
	// Dir is the volume's directory in the store; not persisted.
	Dir string `json:"-"`
}

// volumeDirName maps a volume id to its directory name, by the one id rule.
func volumeDirName(id string) string { return volumePrefix + volumeid.Name(id) }

func (spec VolumeSpec) validate() error {
	if spec.ID == "" {
		return fmt.Errorf("%w: volume id is empty", ErrInvalid)
	}
	if n := len(spec.Layers) + 1; n > overlay.MaxLowers {
		return fmt.Errorf("%w: %d lower layers (%d in the chain plus the init layer), the limit is %d",
			ErrTooManyLayers, n, len(spec.Layers), overlay.MaxLowers)
	}
	if spec.Size < 0 {
		return fmt.Errorf("%w: volume size %d is negative", ErrInvalid, spec.Size)
	}
	if spec.Target != "" && !filepath.IsAbs(spec.Target) {
		return fmt.Errorf("%w: mount target %q must be an absolute path", ErrInvalid, spec.Target)
	}
	for _, f := range spec.Init {
		if err := f.validate(); err != nil {
			return err
		}
	}
	return nil
}

// Mount composes the volume and mounts it at spec.Target. It is idempotent:
// a volume already mounted there is left as it is. The upper of a volume
// that was unmounted with its upper kept is used again.
func (s *Store) Mount(ctx context.Context, spec VolumeSpec) (*Volume, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	unlock, err := s.lock(shared)
	if err != nil {
		return nil, err
	}
	defer unlock()

	name := volumeDirName(spec.ID)
	target := spec.Target
	if target == "" {
		target = s.path(name, mergedName)
	}
	vol, err := s.readVolume(name)
	fresh := errors.Is(err, os.ErrNotExist)
	switch {
	case fresh:
		vol = &Volume{ID: spec.ID, Created: time.Now().UTC(), Dir: s.path(name)}
	case err != nil:
		return nil, err
	case vol.ID != spec.ID:
		return nil, fmt.Errorf("%w: volume directory %s belongs to volume %q", ErrInvalid, vol.Dir, vol.ID)
	}
	if vol.Target != "" {
		mounted, err := overlay.IsMounted(vol.Target)
		if err != nil {
			return nil, err
		}
		if mounted && vol.Target == target {
			return vol, nil
		}
		if mounted {
			return nil, fmt.Errorf("%w: volume %q is already mounted at %s, not %s", ErrInvalid, spec.ID, vol.Target, target)
		}
	}
	state, err := overlay.PrepareTarget(target)
	if err != nil {
		return nil, fmt.Errorf("%w: volume %q: %w", ErrInvalid, spec.ID, err)
	}
	// A target with a mount on it that is not this volume's (checked
	// above) is someone else's: mounting over it would hide it, and the
	// unmount would take the wrong one. One just made has none.
	if state == overlay.TargetFound {
		if mounted, err := overlay.IsMounted(target); err != nil {
			return nil, err
		} else if mounted {
			return nil, fmt.Errorf("%w: volume %q: %s already has a mount this store did not make", ErrTargetBusy, spec.ID, target)
		}
	}

	chain, err := s.chainOf(spec.Layers)
	if err != nil {
		return nil, err
	}
	vol.Layers = slices.Clone(chain.names)
	vol.ReadOnly, vol.Target, vol.Flags = spec.ReadOnly, target, spec.Flags
	vol.InitFiles = make([]string, len(spec.Init))
	for i, f := range spec.Init {
		vol.InitFiles[i] = f.Path
	}
	var initID string
	if fresh {
		initID, err = s.createVolume(ctx, name, vol, chain, spec)
		// Made whole, the volume exists even if its limit cannot be
		// readied now: a retry readies it as for any existing volume.
		if err == nil {
			if aerr := s.limits.Activate(ctx, vol.Dir, vol.Limit); aerr != nil {
				err = fmt.Errorf("%w: %w", ErrLimit, aerr)
			}
		}
	} else {
		initID, err = s.refreshVolume(ctx, name, vol, chain, spec)
	}
	if err != nil {
		return nil, fmt.Errorf("compose volume %q: %w", spec.ID, err)
	}
	cfg, err := s.mountConfig(name, vol.Limit, s.mountLowers(name, initID, chain), spec.ReadOnly)
	if err != nil {
		return nil, err
	}
	cfg.Flags = spec.Flags
	if err := overlay.Mount(ctx, cfg, target, s.opts.MountMode); err != nil {
		if s.forgetRemovedLayers(spec.Layers) {
			// Another process collected a layer this one remembered;
			// the caller's next Import fetches it again.
			err = fmt.Errorf("%w: a layer of the chain was removed from the store: %w", ErrLayerMissing, err)
		}
		return nil, fmt.Errorf("mount volume %q at %s: %w", spec.ID, target, err)
	}
	klog.FromContext(ctx).V(2).Info("Mounted volume", "volumeID", spec.ID, "target", target, "layers", len(spec.Layers), "readOnly", spec.ReadOnly)
	return vol, nil
}

// mountConfig builds the overlay configuration. A read-only mount of a
// volume whose upper holds data shows that data as its top lower, so making
// a written volume read-only hides nothing. overlay.Mount validates it,
// before any syscall.
func (s *Store) mountConfig(name string, lim *quota.Limit, lowers []string, readOnly bool) (overlay.Config, error) {
	cfg := overlay.Config{Dir: s.dir, Lowers: lowers}
	upper := filepath.Join(quota.Dir(name, lim), diffName)
	if !readOnly {
		cfg.Upper = upper
		cfg.Work = filepath.Join(quota.Dir(name, lim), workName)
		return cfg, nil
	}
	empty, err := isEmptyDir(s.path(upper))
	if err != nil {
		return cfg, err
	}
	if !empty {
		cfg.Lowers = append([]string{upper}, lowers...)
	}
	return cfg, nil
}

// mountLowers are the lowers handed to overlayfs, uppermost first, for
// volume name over chain, its init layer's short id initID. fsconfig takes
// one path per call, with no page to fit them in, so there the init layer
// and the chain are named by their directories: the kernel then resolves
// no l/ link per layer, a tenth of the time of mounting a long chain.
// mount(2), whose data must fit in a page, gets the short links the lower
// file lists.
func (s *Store) mountLowers(name, initID string, chain *chainEntry) []string {
	out := make([]string, 0, len(chain.links)+1)
	if s.opts.MountMode != overlay.ModeFSConfig {
		out = append(out, linkDir+"/"+initID)
		return append(out, chain.links...)
	}
	out = append(out, name+initSuffix+"/"+diffName)
	return append(out, chain.dirs...)
}

// chainLinks maps a bottom-first chain to l/ paths, uppermost first, as the
// lower file and mount(2) list them.
func (s *Store) chainLinks(layers []v1.Hash) ([]string, error) {
	out := make([]string, len(layers))
	for i, l := range layers {
		name, err := layerDirName(l)
		if err != nil {
			return nil, err
		}
		id, err := s.layerLink(name)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrLayerMissing, l)
		}
		if err != nil {
			return nil, err
		}
		out[len(layers)-1-i] = linkDir + "/" + id // validLinkID: no Join needed
	}
	return out, nil
}

// createVolume fills a skeleton (see spare.go) with <vol>-init and <vol>,
// their metadata synced together when durable, and renames them into
// place, the init layer first: a crash leaves no volume, or one whole. It
// returns the short id of the init layer.
func (s *Store) createVolume(ctx context.Context, name string, vol *Volume, chain *chainEntry, spec VolumeSpec) (initID string, err error) {
	init, durable := spec.Init, !spec.Ephemeral
	sk, err := s.skeleton(name)
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sk.discard())
		}
	}()
	if err := writeInitFiles(filepath.Join(sk.init, diffName), init, sk.initFiles); err != nil {
		return "", err
	}
	if spec.Size > 0 && !spec.ReadOnly {
		if vol.Limit, err = s.limits.Create(ctx, sk.vol, spec.Size); err != nil {
			return "", fmt.Errorf("%w: %w", ErrLimit, err)
		}
		defer func() {
			if err != nil {
				err = errors.Join(err, s.limits.Release(ctx, sk.vol, vol.Limit))
			}
		}()
	}
	initID, err = s.reserveLinkPreferring(name+initSuffix, sk.initLink)
	if err != nil {
		return "", err
	}
	volID, err := s.reserveLinkPreferring(name, sk.volLink)
	if err != nil {
		return "", errors.Join(err, s.unreserveLink(initID))
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.unreserveLink(initID), s.unreserveLink(volID))
		}
	}()
	record, err := json.Marshal(vol)
	if err != nil {
		return "", err
	}
	files := map[string][]byte{
		filepath.Join(sk.init, lowerName): []byte(chain.joined),
		filepath.Join(sk.vol, lowerName):  []byte(chain.lowerOf(initID)),
		filepath.Join(sk.vol, recordName): record,
	}
	if initID != sk.initLink {
		files[filepath.Join(sk.init, linkName)] = []byte(initID)
	}
	if volID != sk.volLink {
		files[filepath.Join(sk.vol, linkName)] = []byte(volID)
	}
	if err = writeStagedFiles(files, 0o644, durable); err != nil {
		return "", err
	}
	if err = renameNoReplace(sk.init, s.path(name+initSuffix)); err != nil {
		return "", err
	}
	if err = renameNoReplace(sk.vol, s.path(name)); err != nil {
		return "", errors.Join(err, s.removeAll(context.Background(), s.path(name+initSuffix)))
	}
	return initID, nil
}

// renameNoReplace moves a directory to a name nothing has: with
// RENAME_NOREPLACE the kernel refuses an existing one in the same call, as
// os.Rename refuses an existing directory only after an lstat(2) of its
// own, and would replace an existing empty one the lstat missed.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) { // a filesystem without it
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// refreshVolume prepares an existing volume for another mount: new init
// files, and the chain of this mount, which may differ from the last one.
// It returns the short id of the init layer.
func (s *Store) refreshVolume(ctx context.Context, name string, vol *Volume, chain *chainEntry, spec VolumeSpec) (string, error) {
	init, durable := spec.Init, !spec.Ephemeral
	if err := s.writeInitLayer(name+initSuffix, init); err != nil {
		return "", err
	}
	if err := s.limits.Activate(ctx, vol.Dir, vol.Limit); err != nil {
		return "", fmt.Errorf("%w: %w", ErrLimit, err)
	}
	if err := s.sizeVolume(ctx, vol, spec.Size); err != nil {
		return "", fmt.Errorf("%w: %w", ErrLimit, err)
	}
	initID, err := readLink(s.path(name + initSuffix))
	if err != nil {
		return "", err
	}
	// A volume first composed read-only may lack its work dir.
	if err := os.MkdirAll(s.path(quota.Dir(name, vol.Limit), workName), 0o700); err != nil {
		return "", err
	}
	record, err := json.Marshal(vol)
	if err != nil {
		return "", err
	}
	changed := map[string][]byte{}
	for path, data := range map[string][]byte{
		s.path(name+initSuffix, lowerName): []byte(chain.joined),
		s.path(name, lowerName):            []byte(chain.lowerOf(initID)),
		s.path(name, recordName):           record,
	} {
		if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, data) {
			changed[path] = data
		}
	}
	return initID, atomicfile.WriteFiles(changed, 0o644, atomicfile.Durability(durable))
}

// stageDir makes a directory in staging with the given subdirectories.
func (s *Store) stageDir(name string, subs ...string) (string, error) {
	dir, err := os.MkdirTemp(s.path(stagingDir), name+"-")
	if err != nil {
		return "", err
	}
	for _, sub := range subs {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			return "", errors.Join(err, os.RemoveAll(dir))
		}
	}
	return dir, nil
}

// Upper says what Unmount does with a volume's directories.
type Upper int

const (
	// KeepUpper leaves the upper for the next Mount of the same id.
	KeepUpper Upper = iota
	// RemoveUpper deletes the volume's private directories, upper
	// included.
	RemoveUpper
)

// Unmount unmounts the volume from the target its record names, and with
// RemoveUpper deletes its private directories.
func (s *Store) Unmount(ctx context.Context, id string, upper Upper) error {
	unlock, err := s.lock(shared)
	if err != nil {
		return err
	}
	defer unlock()
	name := volumeDirName(id)
	vol, err := s.readVolume(name)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %q", ErrVolumeNotFound, id)
	}
	if err != nil {
		return err
	}
	if vol.ID != id {
		return fmt.Errorf("%w: volume directory %s belongs to volume %q, not %q", ErrInvalid, vol.Dir, vol.ID, id)
	}
	if vol.Target != "" {
		if err := overlay.Unmount(ctx, vol.Target); err != nil {
			return fmt.Errorf("unmount volume %q from %s: %w", id, vol.Target, err)
		}
	}
	if upper == KeepUpper {
		return s.limits.Deactivate(ctx, vol.Dir, vol.Limit)
	}
	// The limit goes first: an image still mounted would be emptied file
	// by file by the removal. A freed project id may still be charged for
	// the files not yet removed; allocation skips such ids.
	if err := s.limits.Release(ctx, vol.Dir, vol.Limit); err != nil {
		return fmt.Errorf("release the size limit of volume %q: %w", id, err)
	}
	// Record the release as the layers' last use, for garbage collection.
	for _, l := range vol.Layers {
		if h, err := v1.NewHash(l); err == nil {
			if name, err := layerDirName(h); err == nil {
				_ = s.touch(name)
			}
		}
	}
	if err := s.retire(ctx, name, vol); err != nil {
		return err
	}
	klog.FromContext(ctx).V(2).Info("Removed volume", "volumeID", id)
	return nil
}

// Volume returns the record of the volume with this id.
func (s *Store) Volume(id string) (*Volume, error) {
	v, err := s.readVolume(volumeDirName(id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %q", ErrVolumeNotFound, id)
	}
	if err == nil && v.ID != id {
		return nil, fmt.Errorf("%w: volume directory %s belongs to volume %q, not %q", ErrInvalid, v.Dir, v.ID, id)
	}
	return v, err
}

// Volumes lists every volume the store holds, mounted or kept.
func (s *Store) Volumes() ([]*Volume, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, err
	}
	var out []*Volume
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), volumePrefix) || strings.HasSuffix(e.Name(), initSuffix) {
			continue
		}
		v, err := s.readVolume(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // created but never recorded: not a volume yet
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Store) readVolume(name string) (*Volume, error) {
	b, err := os.ReadFile(s.path(name, recordName))
	if err != nil {
		return nil, err
	}
	v := &Volume{Dir: s.path(name)}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("read volume record %s: %w", s.path(name, recordName), err)
	}
	return v, nil
}

func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	names, err := f.Readdirnames(1)
	if cerr := f.Close(); cerr != nil {
		return false, cerr
	}
	if len(names) > 0 {
		return false, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return true, nil
}
