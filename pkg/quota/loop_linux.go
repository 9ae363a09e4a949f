package quota

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Flags of struct loop_info64 (linux/loop.h); x/sys/unix lacks them.
const (
	loFlagsAutoclear = 4
	loFlagsDirectIO  = 16
	loopMajor        = 7
)

// loopDev is an open loop device.
type loopDev struct {
	fd   int
	path string
}

func (d loopDev) close() error { return unix.Close(d.fd) }

// attachLoop binds the image at path to a free loop device, autoclear set:
// the device frees itself once nothing holds it open or mounted. Another
// process may take the free device first; then it asks for another.
func attachLoop(path string) (loopDev, error) {
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return loopDev{}, fmt.Errorf("%w: open /dev/loop-control: %w (the node plugin needs the host's /dev)", ErrUnsupported, err)
	}
	defer unix.Close(ctl)
	img, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return loopDev{}, fmt.Errorf("open volume image: %w", err)
	}
	defer unix.Close(img)
	for range loopRetries {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return loopDev{}, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := loopDev{path: fmt.Sprintf("/dev/loop%d", n)}
		dev.fd, err = unix.Open(dev.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return loopDev{}, fmt.Errorf("open %s: %w (a loop device made after the plugin started shows only in the host's /dev)", dev.path, err)
		}
		// Direct I/O keeps the image's pages out of the page cache a
		// second time; a backing filesystem without it gets buffered I/O.
		err = configureLoop(dev.fd, img, path, loFlagsAutoclear|loFlagsDirectIO)
		if errors.Is(err, unix.EINVAL) {
			err = configureLoop(dev.fd, img, path, loFlagsAutoclear)
		}
		if err == nil {
			return dev, nil
		}
		_ = dev.close()
		if !errors.Is(err, unix.EBUSY) {
			return loopDev{}, fmt.Errorf("attach %s to %s: %w", path, dev.path, err)
		}
	}
	return loopDev{}, fmt.Errorf("attach %s: every free loop device was taken first, %d times", path, loopRetries)
}

func configureLoop(fd, img int, path string, flags uint32) error {
	cfg := unix.LoopConfig{Fd: uint32(img), Info: unix.LoopInfo64{Flags: flags}}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], path)
	return unix.IoctlLoopConfigure(fd, &cfg)
}

// imageMounted reports whether dir is the root of a mount of the image at
// path. A mount there of anything else is refused: it is not ours.
func imageMounted(path, dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, fmt.Errorf("stat %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return false, fmt.Errorf("%s is not a directory", dir)
	}
	if err := unix.Lstat(filepath.Dir(dir), &parent); err != nil {
		return false, fmt.Errorf("stat %s: %w", filepath.Dir(dir), err)
	}
	if st.Dev == parent.Dev {
		return false, nil
	}
	backing, err := loopBacking(uint64(st.Dev)) // uint32 on some architectures
	if err != nil {
		return false, fmt.Errorf("%s holds a mount that is not a volume image: %w", dir, err)
	}
	want, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if backing != want {
		return false, fmt.Errorf("%s holds a mount of %s, not of its volume image %s", dir, backing, want)
	}
	return true, nil
}

// loopBacking names the file behind the loop device dev.
func loopBacking(dev uint64) (string, error) {
	if unix.Major(dev) != loopMajor {
		return "", fmt.Errorf("device %d:%d is not a loop device", unix.Major(dev), unix.Minor(dev))
	}
	b, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/loop/backing_file", unix.Major(dev), unix.Minor(dev)))
	if err != nil {
		return "", fmt.Errorf("loop device %d:%d: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// loopOf opens the loop device of the filesystem mounted at dir.
func loopOf(dir string) (loopDev, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return loopDev{}, fmt.Errorf("stat %s: %w", dir, err)
	}
	if unix.Major(uint64(st.Dev)) != loopMajor {
		return loopDev{}, fmt.Errorf("%s is not on a loop device", dir)
	}
	// The minor is the device number only without partitions (max_part);
	// the kernel's own name is always right.
	uevent, err := os.ReadFile(fmt.Sprintf("/sys/dev/block/%d:%d/uevent", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev))))
	if err != nil {
		return loopDev{}, fmt.Errorf("loop device of %s: %w", dir, err)
	}
	name := ""
	for _, line := range strings.Split(string(uevent), "\n") {
		if v, ok := strings.CutPrefix(line, "DEVNAME="); ok && !strings.ContainsAny(v, "/.") {
			name = v
		}
	}
	if name == "" {
		return loopDev{}, fmt.Errorf("loop device of %s: no DEVNAME in its uevent", dir)
	}
	dev := loopDev{path: "/dev/" + name}
	if dev.fd, err = unix.Open(dev.path, unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return loopDev{}, fmt.Errorf("open %s: %w", dev.path, err)
	}
	var dst unix.Stat_t
	if err := unix.Fstat(dev.fd, &dst); err != nil || uint64(dst.Rdev) != uint64(st.Dev) {
		_ = dev.close()
		return loopDev{}, fmt.Errorf("%s is not the device of %s", dev.path, dir)
	}
	return dev, nil
}
