package archive

import (
	"archive/tar"
	"fmt"
	"time"
)

// Mode bits tar headers carry that chmod understands.
const (
	modeSetuid = 0o4000
	modeSetgid = 0o2000
	modeSticky = 0o1000
	modePerm   = 0o777
	modeMask   = modePerm | modeSetuid | modeSetgid | modeSticky
)

// maxID is the largest usable uid/gid; (uid_t)-1 means "leave unchanged" to
// chown, so a header must not be able to ask for it.
const maxID = 1<<32 - 2

// owner is the uid/gid/permission triple a header asks for.
type owner struct {
	uid, gid int
	mode     uint32 // modeMask bits only
}

func headerOwner(hdr *tar.Header) (owner, error) {
	if hdr.Uid < 0 || hdr.Uid > maxID || hdr.Gid < 0 || hdr.Gid > maxID {
		return owner{}, fmt.Errorf("owner %d:%d out of range 0..%d: %w", hdr.Uid, hdr.Gid, maxID, ErrInvalidHeader)
	}
	return owner{uid: hdr.Uid, gid: hdr.Gid, mode: uint32(hdr.Mode) & modeMask}, nil
}

// headerTimes returns the atime and mtime to set. Like moby and containerd,
// atime is never earlier than mtime (tar writers often leave it zero).
func headerTimes(hdr *tar.Header) (atime, mtime time.Time) {
	atime, mtime = hdr.AccessTime, hdr.ModTime
	if atime.Before(mtime) {
		atime = mtime
	}
	return atime, mtime
}

// creator is who new inodes belong to before any chown/chmod.
type creator struct {
	uid, gid   int
	umask      uint32
	umaskKnown bool
}

// dirInfo is what a parent directory imposes on the inodes created in it.
type dirInfo struct {
	gid        uint32
	setgid     bool
	defaultACL bool // a default ACL replaces the umask, so modes can't be predicted
}

// needChown reports whether an inode just created in d by c must be chowned
// to reach want. The group of a new inode is the creator's, or the parent's
// when it is setgid (or the fs is mounted grpid): both agree when the parent's
// group is the creator's, so only then can the call be skipped.
func needChown(c creator, d dirInfo, want owner) bool {
	return want.uid != c.uid || want.gid != c.gid || int64(d.gid) != int64(c.gid)
}

// needChmod reports whether an inode created with permission bits
// want.mode&modePerm must be chmodded to reach want.mode. chowned says whether
// it was just chowned, which clears setuid/setgid on files (not directories).
func needChmod(c creator, d dirInfo, want owner, isDir, chowned bool) bool {
	if !c.umaskKnown || d.defaultACL {
		return true
	}
	if chowned && !isDir && want.mode&(modeSetuid|modeSetgid) != 0 {
		return true
	}
	got := want.mode & modePerm &^ c.umask
	if isDir && d.setgid {
		got |= modeSetgid // new directories inherit setgid
	}
	return got != want.mode
}
