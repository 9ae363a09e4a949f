package record

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// replaceExisting moves tmp to path, and reports whether it exchanged
// them: an existing record is exchanged (see atomicfile.Replace), leaving
// its old content under tmp's name, kept for a later save; were there none
// after all, tmp is renamed into place.
func replaceExisting(tmp, path string) (exchanged bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_EXCHANGE)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) { // nothing to exchange, or no support
		err = unix.Rename(tmp, path)
	}
	if err != nil {
		return false, &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
	}
	return false, nil
}

// replaceNew is replaceExisting for a record expected not to exist: tmp is
// renamed into place if nothing is there (RENAME_NOREPLACE, in the same
// call), else exchanged. Either way no lstat(2) of path comes first, as
// os.Rename makes.
func replaceNew(tmp, path string) (exchanged bool, err error) {
	err = unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EINVAL): // there after all, or no support
		return replaceExisting(tmp, path)
	}
	return false, &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
}
