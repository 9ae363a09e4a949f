package quota

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An image is an ext4 filesystem in a sparse file, loop-mounted where the
// volume's upper and work directories live. It is formatted larger than
// the limit (see formatSize) and a preallocated reserve file takes the
// rest, so that what a pod can write is the limit it asked for, and a
// larger limit is the reserve made smaller.

const (
	imageBlock = 4096
	// fitStep is the granularity an online resize grows an image by.
	fitStep = 1 << 20
	// inodeRatio is one inode per 8 KiB, twice ext4's default density:
	// uppers often hold many small files.
	inodeRatio  = "8192"
	mkfsTimeout = 2 * time.Minute
	loopRetries = 16

	ext4Magic = 0xEF53
	// ext4IocResizeFS is EXT4_IOC_RESIZE_FS, _IOW('f', 16, __u64).
	ext4IocResizeFS = 0x40086610
)

// checkLimit bounds a limit before anything is made for it.
func checkLimit(bytes int64) error {
	if bytes < MinLimit {
		return fmt.Errorf("size %d bytes is below the smallest limit, %d bytes (1Mi)", bytes, MinLimit)
	}
	if bytes > MaxLimit {
		return fmt.Errorf("size %d bytes is above the largest limit, %d bytes (1Pi)", bytes, MaxLimit)
	}
	return nil
}

// CreateImage makes a formatted image of bytes at path, which must not
// exist; it is written under a temporary name and renamed, so path holds
// a whole filesystem or nothing.
func CreateImage(ctx context.Context, opts ImageOptions, path string, bytes int64) (err error) {
	if err := checkLimit(bytes); err != nil {
		return err
	}
	mkfs, err := exec.LookPath(opts.Mkfs)
	if err != nil {
		return fmt.Errorf("%w: no mkfs.ext4 to format volume images with (%w): install e2fsprogs, or give --mkfs", ErrUnsupported, err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		// Left by a crash mid-format: ours, and never mounted.
		if err = os.Remove(tmp); err == nil {
			f, err = os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|os.O_EXCL, 0o600)
		}
	}
	if err != nil {
		return fmt.Errorf("create volume image: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	err = f.Truncate(formatSize(bytes))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("size volume image %s: %w", tmp, err)
	}
	ctx, cancel := context.WithTimeout(ctx, mkfsTimeout)
	defer cancel()
	// nodiscard: the file is sparse already. Lazy init: a sparse file
	// reads as zeros, so nothing needs zeroing. No reserved blocks: they
	// would only serve a privileged writer.
	cmd := exec.CommandContext(ctx, mkfs, "-q", "-F", "-t", "ext4", "-b", fmt.Sprint(imageBlock), "-m", "0",
		"-i", inodeRatio, "-J", fmt.Sprintf("size=%d", journalMiB(bytes)), "-L", "layerset-upper",
		"-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", tmp)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("format volume image with %s: %w: %s", mkfs, err, strings.TrimSpace(string(out)))
	}
	if err := syncFile(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("create volume image: %w", err)
	}
	return nil
}

// MountImage attaches the image at path to a free loop device and mounts
// it at dir (an existing, empty directory of the caller's), unless dir
// already holds a mount of that image. The loop device clears itself when
// the filesystem is unmounted, so nothing outlives the mount, a crash
// included.
func MountImage(ctx context.Context, path, dir string) error {
	if mounted, err := imageMounted(path, dir); err != nil || mounted {
		return err
	}
	if err := checkImage(path); err != nil {
		return err
	}
	dev, err := attachLoop(path)
	if err != nil {
		return err
	}
	// discard gives the host's disk back when a pod deletes files;
	// noinit_itable keeps the kernel from zeroing the inode tables in the
	// background, which would write them all: the file is sparse, so they
	// read as zeros already.
	err = unix.Mount(dev.path, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "discard,noinit_itable,errors=remount-ro")
	// The mount holds the device now; without one, closing our only
	// reference lets autoclear detach it.
	if cerr := dev.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mount volume image %s (%s) at %s: %w", path, dev.path, dir, err)
	}
	return nil
}

// UnmountImage unmounts the image mounted at dir, if any; autoclear then
// frees its loop device.
func UnmountImage(ctx context.Context, path, dir string) error {
	mounted, err := imageMounted(path, dir)
	if err != nil || !mounted {
		return err
	}
	if err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW); err != nil {
		return fmt.Errorf("unmount volume image at %s: %w", dir, err)
	}
	return nil
}

// SetImageLimit makes the image mounted at dir hold at most bytes of
// the volume's writes, live. The filesystem is formatted larger than the
// limit; a preallocated file at its root, outside the upper and work
// directories, takes the difference. Raising the limit shrinks that file,
// which needs no capability; only a limit past the formatted size grows
// the filesystem itself (ext4 online resize, which needs CAP_SYS_RESOURCE).
// A limit below what the volume holds is refused (ErrShrink).
func SetImageLimit(ctx context.Context, path, dir string, bytes int64) error {
	if err := checkLimit(bytes); err != nil {
		return err
	}
	mounted, err := imageMounted(path, dir)
	if err != nil {
		return err
	}
	if !mounted {
		return fmt.Errorf("limit volume image %s: not mounted at %s", path, dir)
	}
	for range 4 {
		sp, err := imageSpace(dir)
		if err != nil {
			return err
		}
		if used := sp.used(); bytes < used {
			return fmt.Errorf("%w: the volume holds %d bytes, more than %d", ErrShrink, used, bytes)
		}
		if room := sp.capacity - sp.overhead; room >= bytes {
			return setReserve(filepath.Join(dir, reserveName), room-bytes, sp.overhead)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		// Metadata of the added groups comes out of the added size: ask
		// for a little more, and check again.
		short := bytes - (sp.capacity - sp.overhead)
		if err := resizeImage(path, dir, fi.Size()+roundUp(short+short/32+fitStep, fitStep)); err != nil {
			return err
		}
	}
	return fmt.Errorf("volume image %s at %s does not reach %d bytes", path, dir, bytes)
}

// ImageUsage is what the volume's writes hold in the image mounted at
// dir, against its limit.
func ImageUsage(dir string) (Usage, error) {
	sp, err := imageSpace(dir)
	if err != nil {
		return Usage{}, err
	}
	return Usage{Bytes: sp.used(), Limit: sp.capacity - sp.overhead - sp.reserve, Inodes: sp.inodes, FreeInodes: sp.freeInodes}, nil
}

// reserveName is the preallocated file that holds an image's space
// beyond its limit. Its xattr overheadXattr records what the empty
// filesystem used (journal, root and lost+found), measured when the
// reserve was made: statfs cannot tell it from a volume's files later.
const (
	reserveName   = ".layerset-reserve"
	overheadXattr = "trusted.layerset.overhead"
)

type space struct {
	capacity, free, reserve, overhead int64 // bytes
	inodes, freeInodes                int64
}

// used is what the volume's files take.
func (sp space) used() int64 { return max(sp.capacity-sp.free-sp.overhead-sp.reserve, 0) }

// imageSpace reads the image's filesystem: capacity is what files may
// take in all (statfs leaves out the inode tables), reserve what the
// reserve file takes of it, overhead what the empty filesystem used.
func imageSpace(dir string) (space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	bsize := int64(st.Bsize)
	sp := space{capacity: int64(st.Blocks) * bsize, free: int64(st.Bavail) * bsize,
		inodes: int64(st.Files - st.Ffree), freeInodes: int64(st.Ffree)}
	reserve := filepath.Join(dir, reserveName)
	var rst unix.Stat_t
	err := unix.Lstat(reserve, &rst)
	if errors.Is(err, unix.ENOENT) {
		// A new image: what is used now is the filesystem's own.
		sp.overhead = sp.capacity - sp.free
		return sp, nil
	}
	if err != nil {
		return space{}, fmt.Errorf("stat the reserve of %s: %w", dir, err)
	}
	sp.reserve = rst.Blocks * 512
	buf := make([]byte, 24)
	n, err := unix.Lgetxattr(reserve, overheadXattr, buf)
	if err != nil {
		return space{}, fmt.Errorf("read %s of %s: %w", overheadXattr, reserve, err)
	}
	if sp.overhead, err = strconv.ParseInt(string(buf[:n]), 10, 64); err != nil || sp.overhead < 0 {
		return space{}, fmt.Errorf("%s of %s is %q, not a size", overheadXattr, reserve, buf[:n])
	}
	return sp, nil
}

// setReserve sizes the reserve file: blocks allocated (fallocate, never
// written, so the image stays sparse on the host) or released (truncate).
func setReserve(path string, bytes, overhead int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o000)
	if err != nil {
		return fmt.Errorf("open the reserve %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	if err := unix.Fsetxattr(int(f.Fd()), overheadXattr, []byte(strconv.FormatInt(overhead, 10)), 0); err != nil {
		return fmt.Errorf("record the overhead of %s: %w", path, err)
	}
	// What counts is what the reserve holds, its extent tree's blocks
	// included: the file's length is adjusted by the difference, twice at
	// most, and a difference of less than two blocks is left alone, so
	// that sizing it again to the same limit changes nothing.
	for range 2 {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return err
		}
		held := st.Blocks * 512
		diff := bytes - held
		if diff > -2*imageBlock && diff < 2*imageBlock {
			break
		}
		size := roundUp(max(st.Size+diff, 0), imageBlock)
		if diff < 0 {
			err = f.Truncate(size)
		} else {
			err = unix.Fallocate(int(f.Fd()), 0, 0, size)
		}
		if err != nil {
			var fs unix.Statfs_t
			_ = unix.Fstatfs(int(f.Fd()), &fs)
			return fmt.Errorf("size the reserve %s from %d to %d bytes (%d bytes free): %w", path, held, bytes, int64(fs.Bavail)*int64(fs.Bsize), err)
		}
	}
	return f.Sync()
}

// resizeImage sets the image's file, loop device and filesystem to size.
func resizeImage(path, dir string, size int64) error {
	dev, err := loopOf(dir)
	if err != nil {
		return err
	}
	defer func() { _ = dev.close() }()
	if err := os.Truncate(path, size); err != nil {
		return fmt.Errorf("grow volume image %s: %w", path, err)
	}
	if err := unix.IoctlSetInt(dev.fd, unix.LOOP_SET_CAPACITY, 0); err != nil {
		return fmt.Errorf("grow loop device %s of %s: %w", dev.path, path, err)
	}
	d, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(d)
	blocks := uint64(size / imageBlock)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(d), ext4IocResizeFS, uintptr(unsafe.Pointer(&blocks))); errno != 0 {
		err := fmt.Errorf("resize the filesystem of %s to %d bytes: %w", path, size, errno)
		if errno == unix.EPERM {
			err = fmt.Errorf("%w: past the size it was formatted with, an image grows only by ext4 online resize, "+
				"which needs CAP_SYS_RESOURCE (a privileged node plugin has it)", err)
		}
		return err
	}
	return nil
}

// checkImage refuses a file that is not an ext4 image this package made
// (a regular file, not a link, with the ext4 magic), before it becomes a
// block device the kernel parses.
func checkImage(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open volume image: %w", err)
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("volume image %s is not a regular file", path)
	}
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1024+56); err != nil {
		return fmt.Errorf("read volume image %s: %w", path, err)
	}
	if m := uint16(magic[0]) | uint16(magic[1])<<8; m != ext4Magic {
		return fmt.Errorf("volume image %s is not an ext4 filesystem (magic %#x)", path, m)
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// formatSize is how large an image for limit is formatted: twice the
// limit, at least the limit and 1 GiB, with room for its metadata. The file is sparse, so the host's
// disk pays only for what is written; in exchange a limit can be raised
// that far without growing the filesystem, which ext4 allows only to a
// holder of CAP_SYS_RESOURCE.
// One part in 16 more pays for the inode tables, which statfs does not
// count as space.
func formatSize(limit int64) int64 {
	size := min(limit+max(limit, 1<<30), MaxLimit+1<<30)
	return roundUp(size+size/16, fitStep)
}

// journalMiB sizes the journal by the limit, not by the formatted size:
// the journal is written in full over time, so it is the part of the
// headroom the host's disk does pay for. 1/32 of the limit, 4 to 256 MiB.
func journalMiB(limit int64) int64 { return min(max(limit>>20/32, 4), 256) }

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }
