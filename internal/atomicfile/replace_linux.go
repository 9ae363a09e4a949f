package atomicfile

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Replace moves tmp to path. An existing file is exchanged with tmp rather
// than renamed over, leaving its old content under tmp's name for the
// caller to delete: ext4 writes a file renamed over another out to disk at
// once (auto_da_alloc), which would put a disk write into every unsynced
// replacement.
func Replace(tmp, path string) error {
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) { // nothing to exchange, or no support
		return os.Rename(tmp, path)
	}
	return err
}
