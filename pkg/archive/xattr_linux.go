package archive

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func fsetxattrs(fd int, xattrs []xattr) error {
	for _, x := range xattrs {
		if err := unix.Fsetxattr(fd, x.name, []byte(x.value), 0); err != nil {
			return fmt.Errorf("setting xattr %q: %w", x.name, err)
		}
	}
	return nil
}

// lsetxattrsAt sets xattrs on the symlink base in dirfd. There is no
// lsetxattrat before Linux 6.13's setxattrat, and a symlink can't be opened
// for fsetxattr, so the name is reached through the directory's descriptor
// in /proc, which pins the directory as the *at calls do.
func lsetxattrsAt(dirfd int, base string, xattrs []xattr) error {
	if len(xattrs) == 0 {
		return nil
	}
	p := "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + base
	for _, x := range xattrs {
		if err := unix.Lsetxattr(p, x.name, []byte(x.value), 0); err != nil {
			return fmt.Errorf("setting xattr %q on symlink: %w", x.name, err)
		}
	}
	return nil
}

func timespecs(hdr *tar.Header) [2]unix.Timespec {
	atime, mtime := headerTimes(hdr)
	return [2]unix.Timespec{
		{Sec: atime.Unix(), Nsec: int64(atime.Nanosecond())},
		{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())},
	}
}

// futimens sets the times of fd itself: utimensat with a NULL path, which
// x/sys/unix does not wrap.
func futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// readUmask reads the process umask without changing it (umask(2) can only
// be read by setting it, which would race with other goroutines).
func readUmask() (mask uint32, ok bool) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	s := bufio.NewScanner(bytes.NewReader(status))
	for s.Scan() {
		if v, found := bytes.CutPrefix(s.Bytes(), []byte("Umask:")); found {
			m, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			return uint32(m), err == nil
		}
	}
	return 0, false
}
