package quota

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The kernel interfaces of project quotas that golang.org/x/sys/unix (v0.49)
// does not define: the fsxattr ioctls and structure, and the quotactl
// commands and structures. Each mirrors the UAPI header named beside it.

// fsxattr mirrors struct fsxattr of <linux/fs.h>, the argument of
// FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR: five __u32 and 8 bytes of pad,
// the same 28 bytes on every architecture.
type fsxattr struct {
	Xflags     uint32 // fsx_xflags: FS_XFLAG_*
	Extsize    uint32 // fsx_extsize
	Nextents   uint32 // fsx_nextents
	Projid     uint32 // fsx_projid
	Cowextsize uint32 // fsx_cowextsize
	_          [8]byte
}

// fsXflagProjinherit is FS_XFLAG_PROJINHERIT of <linux/fs.h>: a directory
// with it hands its project id to every inode created in it.
const fsXflagProjinherit = 0x00000200

// ifDqblk mirrors struct if_dqblk of <linux/quota.h>, the argument of
// Q_GETQUOTA and Q_SETQUOTA: eight __u64 and a __u32. The C struct is 72
// bytes where __u64 is 8-aligned (amd64, arm64, and 32-bit arm EABI) and 68
// on i386; Go aligns uint64 to 4 on every 32-bit target, so the trailing pad
// makes the Go struct at least as large as the kernel's everywhere and the
// kernel never writes past it.
type ifDqblk struct {
	Bhardlimit uint64 // dqb_bhardlimit: in quotaBlock units
	Bsoftlimit uint64 // dqb_bsoftlimit: in quotaBlock units
	Curspace   uint64 // dqb_curspace: bytes
	Ihardlimit uint64 // dqb_ihardlimit
	Isoftlimit uint64 // dqb_isoftlimit
	Curinodes  uint64 // dqb_curinodes
	Btime      uint64 // dqb_btime
	Itime      uint64 // dqb_itime
	Valid      uint32 // dqb_valid: QIF_*
	_          uint32
}

// ifDqinfo mirrors struct if_dqinfo of <linux/quota.h>, the argument of
// Q_GETINFO: 24 bytes everywhere.
type ifDqinfo struct {
	Bgrace uint64 // dqi_bgrace
	Igrace uint64 // dqi_igrace
	Flags  uint32 // dqi_flags
	Valid  uint32 // dqi_valid
}

// fsQfilestatv mirrors struct fs_qfilestatv of <linux/dqblk_xfs.h>.
type fsQfilestatv struct {
	Ino      uint64
	Nblks    uint64
	Nextents uint32
	_        uint32
}

// fsQuotaStatv mirrors struct fs_quota_statv of <linux/dqblk_xfs.h>, the
// argument of Q_XGETQSTATV: explicitly padded, 160 bytes everywhere. Despite
// the header's name the generic quota code answers it for every filesystem
// with quotas, ext4 included; it is the one query that tells accounting from
// enforcement.
type fsQuotaStatv struct {
	Version      int8   // qs_version: the caller sets fsQstatvVersion1
	_            uint8  // qs_pad1
	Flags        uint16 // qs_flags: FS_QUOTA_*
	Incoredqs    uint32
	Uquota       fsQfilestatv
	Gquota       fsQfilestatv
	Pquota       fsQfilestatv
	Btimelimit   int32
	Itimelimit   int32
	Rtbtimelimit int32
	Bwarnlimit   uint16
	Iwarnlimit   uint16
	Rtbwarnlimit uint16
	_            uint16 // qs_pad3
	_            uint32 // qs_pad4
	_            [7]uint64
}

// From <linux/quota.h> and <linux/dqblk_xfs.h>.
const (
	prjQuota = 2 // PRJQUOTA

	qGetInfo  = 0x800005 // Q_GETINFO
	qGetQuota = 0x800007 // Q_GETQUOTA
	qSetQuota = 0x800008 // Q_SETQUOTA
	// Q_XGETQSTATV is XQM_CMD(8): ('X'<<8)+8.
	qXGetQStatV = 'X'<<8 + 8

	qifBLimits = 1 // QIF_BLIMITS: dqb_bhardlimit and dqb_bsoftlimit are valid

	// quotaBlock is QIF_DQBLKSIZE, the unit of if_dqblk's block limits.
	quotaBlock = 1024

	fsQstatvVersion1 = 1        // FS_QSTATV_VERSION1
	fsQuotaPdqAcct   = 1 << 4   // FS_QUOTA_PDQ_ACCT: project usage is accounted
	fsQuotaPdqEnfd   = 1 << 5   // FS_QUOTA_PDQ_ENFD: project limits are enforced
	subCmdShift      = 8        // SUBCMDSHIFT
	subCmdMask       = 0x00ff   // SUBCMDMASK
	hostfsMagic      = 0xc0ffee // HOSTFS_SUPER_MAGIC (fs/hostfs), not in x/sys
)

// qcmd is QCMD(cmd, type) of <linux/quota.h>.
func qcmd(cmd, typ uint32) uint32 {
	return cmd<<subCmdShift | typ&subCmdMask
}

// quotactlFd is quotactl_fd(2) (Linux 5.14+): quotactl on the filesystem
// that holds fd, with no block device path, which an overlay store on a
// device-mapper or loop device may not have a name for in our mount
// namespace.
func quotactlFd(fd int, cmd uint32, id uint32, addr unsafe.Pointer) error {
	_, _, errno := unix.Syscall6(unix.SYS_QUOTACTL_FD, uintptr(fd), uintptr(cmd), uintptr(id), uintptr(addr), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// getFsxattr and setFsxattr are FS_IOC_FSGETXATTR and FS_IOC_FSSETXATTR.
func getFsxattr(fd int) (fsxattr, error) {
	var fa fsxattr
	if err := ioctlPtr(fd, fsIocFsgetxattr, unsafe.Pointer(&fa)); err != nil {
		return fa, fmt.Errorf("FS_IOC_FSGETXATTR: %w", err)
	}
	return fa, nil
}

func setFsxattr(fd int, fa *fsxattr) error {
	if err := ioctlPtr(fd, fsIocFssetxattr, unsafe.Pointer(fa)); err != nil {
		return fmt.Errorf("FS_IOC_FSSETXATTR: %w", err)
	}
	return nil
}

func ioctlPtr(fd int, req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// openDirNoFollow opens dir for the fsxattr ioctls and quotactl_fd. O_NOFOLLOW: the
// plugin runs privileged, and a symlink it did not make at the end of a
// path in a volume (an upper a pod writes to) could point it at any
// directory of the node; O_DIRECTORY: project inheritance is a directory's
// property, and a file passed by mistake is refused rather than charged.
func openDirNoFollow(dir string) (int, error) {
	for {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			return fd, nil
		case errors.Is(err, unix.EINTR): // a signal during open on a network or FUSE filesystem
			continue
		case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR) && isSymlink(dir):
			// With O_DIRECTORY Linux says ENOTDIR for a final symlink, not
			// ELOOP; the message says which it was.
			return -1, fmt.Errorf("%s: refusing a symbolic link (never followed): %w", dir, err)
		case errors.Is(err, unix.ENOTDIR):
			return -1, fmt.Errorf("%s: not a directory: %w", dir, err)
		}
		return -1, fmt.Errorf("open %s: %w", dir, err)
	}
}

// isSymlink reports whether path's last component is a symlink; only for
// wording an error the open already returned.
func isSymlink(path string) bool {
	var st unix.Stat_t
	return unix.Lstat(path, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

// fsTypeName names the filesystem holding fd by its statfs f_type, for error
// messages: a person reading "tmpfs" knows what to change, one reading
// 0x1021994 does not.
func fsTypeName(fd int) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "filesystem of unknown type (" + err.Error() + ")"
	}
	// f_type is a 32-bit magic on every architecture; where Type is int32
	// the conversion undoes the sign extension of magics above 1<<31.
	switch m := uint32(st.Type); m {
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.EXT4_SUPER_MAGIC: // ext2 and ext3 share it; today's kernels mount all three with ext4
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	case unix.FUSE_SUPER_MAGIC:
		return "fuse"
	case unix.RAMFS_MAGIC:
		return "ramfs"
	case unix.V9FS_MAGIC:
		return "9p"
	case unix.SQUASHFS_MAGIC:
		return "squashfs"
	case unix.PROC_SUPER_MAGIC:
		return "proc"
	case unix.SYSFS_MAGIC:
		return "sysfs"
	case hostfsMagic:
		return "hostfs"
	default:
		return fmt.Sprintf("filesystem type %#x", m)
	}
}
