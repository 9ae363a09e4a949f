package archive

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults for the zero values of PackOptions.
const (
	DefaultMaxDepth    = 1024
	DefaultSpoolMemory = 4 << 20
	DefaultPackRetries = 8
)

// maxPathLen is the longest entry path Pack writes: Apply opens an entry's
// parent by its whole path, which the kernel takes up to PATH_MAX bytes
// with the NUL.
const maxPathLen = 4095

var (
	// ErrFileChanged means a file changed while it was read and did not
	// hold still for as many tries as PackOptions.Retries allows, or
	// changed in a way a read lease cannot hold off after it was streamed.
	ErrFileChanged = errors.New("file changed while it was read")
	// ErrOverlayFeature means the upper holds what overlayfs writes with
	// redirect_dir or metacopy on, which an OCI layer cannot express.
	ErrOverlayFeature = errors.New("upper uses an overlayfs feature a layer cannot express")
)

// PackOptions bound and shape what Pack writes. The zero value is usable.
//
// Pack is the inverse of Apply: it reads an overlayfs upper directory (a
// volume's diff/, what a pod wrote) and writes it as a standard OCI image
// layer, the way `docker commit` packs a container's upper:
//
//   - a whiteout (a 0/0 character device, or a file carrying the overlay
//     whiteout xattr) becomes an empty file ".wh.NAME";
//   - an opaque directory (the overlay opaque xattr "y") gets a
//     ".wh..wh..opq" entry right after its own;
//   - files that share an inode within the upper become one file and
//     hardlinks to it (by device and inode, first name in walk order);
//   - owners, modes (setuid, setgid, sticky included) and extended
//     attributes are kept, as PAX SCHILY.xattr records; overlayfs's own
//     attributes (trusted.overlay.*, user.overlay.*) are not, nor
//     security.selinux, a label of this node's policy and of the pod's
//     categories rather than content;
//   - entries are written in a fixed order (each directory's names sorted
//     bytewise, depth first, the root first as "./"), with numeric owners
//     only and times to the second (PackOptions.FixedMtime replaces them),
//     so the same upper packs to the same bytes.
//
// The upper is untrusted: the pod wrote it. Every name is opened relative to
// its parent's descriptor with O_NOFOLLOW, so a symlink is packed as a
// symlink and never followed, fifos and devices are packed as entries and
// never opened for their content, and a mount inside the upper (which
// overlayfs would not show) is refused. Limits bound entries, sizes, depth
// and path length, the last as Apply needs it (PATH_MAX).
//
// Features overlayfs can write to an upper that a layer cannot express are
// refused with ErrOverlayFeature: a directory renamed with redirect_dir on
// (its content stays in the lower, under its old name) and a metadata-only
// copy-up with metacopy on (its data stays in the lower). The store mounts
// with neither (see pkg/overlay).
//
// # Live uppers
//
// A volume may be packed while its pod writes. Pack then guarantees each
// file's content as of one moment, never a mix of two versions, and each
// entry's metadata as of the moment it was read; it is not a point-in-time
// view of the whole tree (a rename during the walk may show a file at both
// names or at neither, as a backup tool would see it).
//
// Regular files are read in one of two ways. First Pack takes a read lease
// (F_SETLEASE F_RDLCK) on the upper's inode. The kernel grants it only when
// nobody has the file open for writing, and while it is held anyone who
// opens the file for writing, or with O_TRUNC, waits in open(2) until Pack
// lets go (at most the read of that one file; overlayfs's opens reach the
// upper inode, so this holds the pod's writers off too). The content is
// then streamed straight into the tar. A file that is open for writing is
// given a few milliseconds to be closed (most writers close what they
// wrote); one that stays open gets no lease. It is copied to a spool
// (memory, or a file in PackOptions.SpoolDir) and its size, mtime, ctime
// and inode compared before and after, the copy retried up to
// PackOptions.Retries times and the file refused with ErrFileChanged
// naming it if it never held still.
//
// Both ways compare the metadata around the read, and a timestamp the
// clock has not yet moved past ("racy", as git calls it) is waited out
// first, so that a write in the same clock tick cannot leave ctime as it
// was: filesystems stamp times from a coarse clock (or to the second). A
// change the lease cannot hold off (truncate(2) by path, which overlayfs
// passes to the upper without breaking leases, or a writer let through
// after /proc/sys/fs/lease-break-time) is therefore seen, but after the
// content went into the stream: Pack then fails with ErrFileChanged and the
// caller packs again (the store's Commit does, a bounded number of times).
//
// Writes through a shared writable mapping reach the page cache without
// updating ctime until written back; such a file holds a writable
// descriptor and so gets no lease, and a mapping's writes between the two
// stats are not seen. Databases that write through mmap should be quiesced
// by the application before a commit.
type PackOptions struct {
	MaxEntries   int   // 0 = DefaultMaxEntries
	MaxFileSize  int64 // 0 = DefaultMaxFileSize
	MaxTotalSize int64 // 0 = DefaultMaxTotalSize: sum of regular file sizes
	MaxDepth     int   // 0 = DefaultMaxDepth: directories below the root
	// FixedMtime, when set, is every entry's modification time, so that
	// the layer's digest depends on content alone.
	FixedMtime *time.Time
	// UserXattr reads the upper as overlayfs mounted with "userxattr"
	// writes it: opaque and whiteout markers in user.overlay.*. Otherwise
	// they are read in trusted.overlay.*, which needs CAP_SYS_ADMIN.
	UserXattr bool
	// SpoolDir is where a file that is open for writing is copied before
	// it is checked and packed, when larger than SpoolMemory. Empty means
	// os.TempDir().
	SpoolDir string
	// SpoolMemory is the largest such copy kept in memory. 0 means
	// DefaultSpoolMemory.
	SpoolMemory int64
	// Retries is how many more times a file that changed while it was
	// copied is copied again. 0 means DefaultPackRetries; negative, none.
	Retries int
	// Exclude, when set, is asked of every name below the root
	// (slash-separated, relative, as in the tar); a name it excludes is
	// not packed, nor, for a directory, anything beneath it. The store
	// excludes a volume's init file paths.
	Exclude func(name string) bool
	// Warn is told about each entry left out on purpose (sockets, which
	// tar cannot hold; overlayfs xattrs of the other namespace), with a
	// reason. May be nil.
	Warn func(name, reason string)

	// afterRead, in tests, is called once a file's content was read, before
	// it is looked at again: a change made there is one made mid-read.
	afterRead func(name string, leased bool)
}

// PackStats describes what Pack wrote.
type PackStats struct {
	Entries   int   // tar entries written, markers included
	Whiteouts int   // ".wh.NAME" entries
	Opaques   int   // ".wh..wh..opq" entries
	Hardlinks int   // hardlink entries
	Skipped   int   // entries left out (each reported to Warn)
	Excluded  int   // names PackOptions.Exclude left out
	Bytes     int64 // regular file content written
	Leased    int   // files streamed under a read lease
	Spooled   int   // files copied to a spool and checked
	Retries   int   // copies made again because the file changed
}

func (o PackOptions) withDefaults() (PackOptions, error) {
	if o.MaxEntries < 0 || o.MaxFileSize < 0 || o.MaxTotalSize < 0 || o.MaxDepth < 0 || o.SpoolMemory < 0 {
		return o, fmt.Errorf("archive: negative limit in pack options (MaxEntries %d, MaxFileSize %d, MaxTotalSize %d, MaxDepth %d, SpoolMemory %d)",
			o.MaxEntries, o.MaxFileSize, o.MaxTotalSize, o.MaxDepth, o.SpoolMemory)
	}
	// The limits Apply has too take Apply's defaults.
	shared, err := Options{MaxEntries: o.MaxEntries, MaxFileSize: o.MaxFileSize, MaxTotalSize: o.MaxTotalSize}.withDefaults()
	if err != nil {
		return o, err
	}
	o.MaxEntries, o.MaxFileSize, o.MaxTotalSize = shared.MaxEntries, shared.MaxFileSize, shared.MaxTotalSize
	if o.MaxDepth == 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.SpoolMemory == 0 {
		o.SpoolMemory = DefaultSpoolMemory
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultPackRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	return o, nil
}

// overlayNamespace is where overlayfs keeps its own xattrs in an upper.
func (o PackOptions) overlayNamespace() string {
	if o.UserXattr {
		return "user.overlay."
	}
	return "trusted.overlay."
}

// packXattr says what becomes of an xattr of the upper: kept, or left out,
// with a reason to warn about when the pod may have meant it as data.
func packXattr(name, namespace string) (keep bool, warn string) {
	switch {
	case strings.HasPrefix(name, namespace):
		return false, "" // overlayfs's own: read for markers, never copied
	case isOverlayXattr(name):
		// The other namespace: plain data to this mount, but Apply (and
		// any overlayfs mounted the other way) would read it as markers.
		return false, fmt.Sprintf("xattr %q is in an overlayfs namespace, which a layer may not carry", name)
	case name == "security.selinux":
		return false, "" // a label of this node's policy, not content
	}
	return true, ""
}
