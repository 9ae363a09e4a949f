package layers

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"os"

	"github.com/layerset/layerset-csi/internal/atomicfile"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// linkIDLen is the length of a short id: 16 random bytes in base32 without
// padding, as Docker's overlay2 driver uses.
const linkIDLen = 26

// newLinkID returns a fresh random short id. Callers reserve it by creating
// the l/ symlink, which fails if the id is taken.
func newLinkID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate link id: %w", err)
	}
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])[:linkIDLen], nil
}

// validLinkID reports whether s looks like an id newLinkID made, so that a
// corrupted link file never becomes a path.
func validLinkID(s string) bool {
	if len(s) != linkIDLen {
		return false
	}
	for _, c := range s {
		if (c < 'A' || c > 'Z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// writeFileAtomic replaces path with data, synced: readers and a restart
// after a crash or power loss see the old content or the new.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.WriteFiles(map[string][]byte{path: data}, perm, atomicfile.Durable)
}

// writeStagedFiles writes files into a staging directory that nothing
// else sees until it is renamed into place, which is what makes them
// appear at once: they need no rename of their own. With durable, they
// are synced concurrently before the caller's rename.
func writeStagedFiles(files map[string][]byte, perm os.FileMode, durable bool) error {
	write := func(path string, data []byte) error {
		if err := overwriteFile(path, data, perm, durable); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	}
	if !durable { // nothing to wait for: goroutines would only add cost
		for path, data := range files {
			if err := write(path, data); err != nil {
				return err
			}
		}
		return nil
	}
	var g errgroup.Group
	for path, data := range files {
		g.Go(func() error { return write(path, data) })
	}
	return g.Wait()
}

// overwriteFile writes data over what path holds, creating it if need be.
// A spare skeleton's files are written over rather than truncated first:
// ext4 flushes a file truncated to zero and rewritten when it is closed,
// to protect applications that rewrite in place from losing both
// versions, and that flush would put a disk write in every pod start. A
// file that already holds data is left alone: a read costs less than a
// write, and a spare's lower files often hold the same chain.
func overwriteFile(path string, data []byte, perm os.FileMode, durable bool) error {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC|unix.O_NOFOLLOW, uint32(perm))
	if err != nil {
		return err
	}
	same, err := holds(fd, data)
	for off := 0; err == nil && !same && off < len(data); {
		var n int
		n, err = unix.Pwrite(fd, data[off:], int64(off))
		off += n
	}
	if err == nil && !same {
		err = truncateTo(fd, int64(len(data)))
	}
	if err == nil && durable {
		err = unix.Fsync(fd)
	}
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	return err
}

// holds reports whether the file open at fd has exactly data in it.
func holds(fd int, data []byte) (bool, error) {
	buf := make([]byte, len(data)+1)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return false, err
	}
	return n == len(data) && bytes.Equal(buf[:n], data), nil
}

// truncateTo shortens the file open at fd to size if it is longer.
func truncateTo(fd int, size int64) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Size <= size {
		return nil
	}
	return unix.Ftruncate(fd, size)
}
