package quota

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Project quotas go through quotactl_fd(2) and the generic quota commands
// (Q_GETINFO, Q_GETQUOTA, Q_SETQUOTA, Q_XGETQSTATV), which XFS and ext4 both
// answer, rather than XFS's own Q_XSETQLIM or the xfs_quota and setquota
// tools: one code path for both filesystems and no block device name to
// find. Every path is opened with O_NOFOLLOW|O_DIRECTORY (see openDirNoFollow).

// ProbeProject returns nil when dir's filesystem enforces project quotas.
// Otherwise it returns an error wrapping ErrUnsupported that names the
// filesystem type and what is missing, so that whoever reads the node's log
// can act: a kernel without quotactl_fd (built without CONFIG_QUOTA, or
// older than 5.14), a filesystem with no quotas in this kernel (XFS
// without CONFIG_XFS_QUOTA) or none at all (tmpfs), one not
// mounted with prjquota (accounting off), or one that accounts but does
// not enforce. A node probes once, at start: none of this changes while a
// filesystem stays mounted.
func ProbeProject(dir string) error {
	fd, err := openDirNoFollow(dir)
	if err != nil {
		return fmt.Errorf("probe project quotas: %w", err)
	}
	defer unix.Close(fd)
	fs := fsTypeName(fd)
	unsupported := func(reason string, cause error) error {
		if cause != nil {
			return fmt.Errorf("%s (%s): project quotas %w: %s: %w", dir, fs, ErrUnsupported, reason, cause)
		}
		return fmt.Errorf("%s (%s): project quotas %w: %s", dir, fs, ErrUnsupported, reason)
	}

	// An invalid descriptor tells the kernel's lack of quotactl_fd (ENOSYS
	// before the descriptor is looked at) from a filesystem's lack of
	// quota operations (also ENOSYS, but only once the file is found).
	switch err := quotactlFd(-1, qcmd(qGetInfo, prjQuota), 0, nil); {
	case errors.Is(err, unix.EBADF):
	case errors.Is(err, unix.ENOSYS):
		return unsupported(kernelWithoutQuotactl(), fmt.Errorf("quotactl_fd: %w", err))
	case errors.Is(err, unix.EPERM):
		return unsupported("quotactl_fd(2) is refused before it runs: a seccomp filter blocks it", fmt.Errorf("quotactl_fd: %w", err))
	default:
		return fmt.Errorf("%s (%s): probe project quotas: quotactl_fd: unexpected %w", dir, fs, err)
	}

	// Q_GETINFO fails ENOSYS where the filesystem has no quota operations,
	// EINVAL where it has no project quota type, ESRCH where project
	// accounting is off.
	var info ifDqinfo
	switch err := quotactlFd(fd, qcmd(qGetInfo, prjQuota), 0, unsafe.Pointer(&info)); {
	case err == nil:
	case errors.Is(err, unix.ENOSYS):
		return unsupported(noQuotaOps(fs), fmt.Errorf("quotactl_fd Q_GETINFO: %w", err))
	case errors.Is(err, unix.EINVAL):
		return unsupported(fs+" has no project quotas", fmt.Errorf("quotactl_fd Q_GETINFO: %w", err))
	case errors.Is(err, unix.ESRCH):
		return unsupported("project quota accounting is off: "+mountHint(fs), fmt.Errorf("quotactl_fd Q_GETINFO: %w", err))
	default:
		return fmt.Errorf("%s (%s): probe project quotas: quotactl_fd Q_GETINFO: %w", dir, fs, err)
	}

	st := fsQuotaStatv{Version: fsQstatvVersion1}
	if err := quotactlFd(fd, qcmd(qXGetQStatV, prjQuota), 0, unsafe.Pointer(&st)); err != nil {
		return fmt.Errorf("%s (%s): probe project quotas: quotactl_fd Q_XGETQSTATV: %w", dir, fs, err)
	}
	switch {
	case st.Flags&fsQuotaPdqAcct == 0:
		return unsupported("project quota accounting is off: "+mountHint(fs), nil)
	case st.Flags&fsQuotaPdqEnfd == 0:
		return unsupported("project quotas are accounted but not enforced: "+mountHint(fs), nil)
	}
	return nil
}

// noQuotaOps explains a filesystem without quota operations: XFS has
// them only with CONFIG_XFS_QUOTA, ext4 only with CONFIG_QUOTA, others
// (tmpfs, overlay, btrfs, whose qgroups are another thing) never.
func noQuotaOps(fs string) string {
	switch fs {
	case "xfs":
		return "this kernel's XFS has no quota support: it is built without CONFIG_XFS_QUOTA"
	case "ext4":
		return "this kernel's ext4 has no quota support: it is built without CONFIG_QUOTA"
	}
	return fs + " has no quotas"
}

// mountHint says how fs gets enforced project quotas.
func mountHint(fs string) string {
	switch fs {
	case "xfs":
		return "mount it with -o prjquota (XFS turns project accounting and enforcement on only at mount; pqnoenforce accounts without limits)"
	case "ext4":
		return "it needs the project and quota features (mkfs.ext4 -O project,quota, or tune2fs -O project,quota while unmounted), " +
			"a kernel with CONFIG_QFMT_V2 (the quota_v2 format, without which such a filesystem does not mount read-write) " +
			"and mounting with -o prjquota, which turns on enforcement"
	}
	return "mount it with its project quota option (prjquota on XFS and ext4)"
}

// kernelWithoutQuotactl explains an ENOSYS from quotactl_fd with the
// running kernel's release: older than 5.14 it never had the call;
// otherwise it was built without CONFIG_QUOTACTL, which CONFIG_QUOTA (ext4
// and most others) and CONFIG_XFS_QUOTA select.
func kernelWithoutQuotactl() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "the kernel has no quotactl_fd(2): it is built without CONFIG_QUOTA and CONFIG_QUOTACTL, or older than Linux 5.14"
	}
	release := unix.ByteSliceToString(u.Release[:])
	if olderThan(release, 5, 14) {
		return "Linux " + release + " is older than 5.14, which added quotactl_fd(2)"
	}
	return "Linux " + release + " is built without CONFIG_QUOTA and CONFIG_QUOTACTL (its quotactl_fd(2) is ENOSYS)"
}

// olderThan reports whether a kernel release such as "6.1.0-18-amd64" is
// before major.minor; one it cannot read is not.
func olderThan(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma < major || ma == major && mi < minor
}

// SetProject gives dir the project id and the inherit flag
// (FS_XFLAG_PROJINHERIT), so that every file and directory created below it
// is charged to id; the kernel refuses (EXDEV) to rename an inode of
// another project into it, so mv copies instead and the copy is charged. dir must be a directory: inheritance is a
// directory's property. What dir already holds keeps its old project; a
// volume's upper is given its project while it is still empty.
func SetProject(dir string, id uint32) error {
	fd, err := openDirNoFollow(dir)
	if err != nil {
		return fmt.Errorf("set project %d: %w", id, err)
	}
	defer unix.Close(fd)
	fa, err := getFsxattr(fd)
	if err != nil {
		return projectErr(fd, dir, fmt.Sprintf("set project %d", id), err)
	}
	// Read, modify, write: the other flags (append-only, extent size
	// hints) are not ours to clear.
	fa.Projid = id
	fa.Xflags |= fsXflagProjinherit
	if err := setFsxattr(fd, &fa); err != nil {
		return projectErr(fd, dir, fmt.Sprintf("set project %d", id), err)
	}
	return nil
}

// ProjectOf returns dir's project id.
func ProjectOf(dir string) (uint32, error) {
	fd, err := openDirNoFollow(dir)
	if err != nil {
		return 0, fmt.Errorf("project of: %w", err)
	}
	defer unix.Close(fd)
	fa, err := getFsxattr(fd)
	if err != nil {
		return 0, projectErr(fd, dir, "project of", err)
	}
	return fa.Projid, nil
}

// projectErr words a failed fsxattr ioctl: ENOTTY and EOPNOTSUPP mean the
// filesystem keeps no project ids (tmpfs, or ext4 without the project
// feature), which is ErrUnsupported rather than a failure of this call.
func projectErr(fd int, dir, op string, err error) error {
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("%s: %s (%s): project ids %w: %w", op, dir, fsTypeName(fd), ErrUnsupported, err)
	}
	return fmt.Errorf("%s: %s (%s): %w", op, dir, fsTypeName(fd), err)
}

// SetProjectLimit sets the hard block limit of project id on the
// filesystem holding dir to bytes, rounded up to whole 1 KiB quota blocks;
// 0 removes the limit. The soft limit is set to none with it (Q_SETQUOTA
// sets both or neither): a volume has one size, and a grace period would
// only let it overrun that for a while. Inode limits are left as they are.
// The limit takes effect at once, on data already written too: raising it
// lets a writer that hit EDQUOT go on, lowering it below the usage stops
// further writes without removing anything (ErrShrink is the callers'
// policy, not the kernel's).
func SetProjectLimit(dir string, id uint32, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("set limit of project %d on %s: negative size %d", id, dir, bytes)
	}
	fd, err := openDirNoFollow(dir)
	if err != nil {
		return fmt.Errorf("set limit of project %d: %w", id, err)
	}
	defer unix.Close(fd)
	blocks := (uint64(bytes) + quotaBlock - 1) / quotaBlock
	dq := ifDqblk{Bhardlimit: blocks, Valid: qifBLimits}
	if err := quotactlFd(fd, qcmd(qSetQuota, prjQuota), id, unsafe.Pointer(&dq)); err != nil {
		return quotactlErr(fd, dir, fmt.Sprintf("set limit of project %d to %d bytes: quotactl_fd Q_SETQUOTA", id, bytes), err)
	}
	return nil
}

// ProjectUsage returns the bytes and inodes charged to project id on the
// filesystem holding dir, and its hard limit (0: none). Bytes include
// space reserved for data not yet written back, which the limit counts
// too. Project quotas do not bound what remains of the inodes, so
// FreeInodes is -1.
func ProjectUsage(dir string, id uint32) (Usage, error) {
	fd, err := openDirNoFollow(dir)
	if err != nil {
		return Usage{}, fmt.Errorf("usage of project %d: %w", id, err)
	}
	defer unix.Close(fd)
	var dq ifDqblk
	err = quotactlFd(fd, qcmd(qGetQuota, prjQuota), id, unsafe.Pointer(&dq))
	switch {
	case errors.Is(err, unix.ENOENT):
		// XFS keeps no record of a project that was never charged nor
		// limited, and says so; ext4 answers zeros.
		return Usage{FreeInodes: -1}, nil
	case err != nil:
		return Usage{}, quotactlErr(fd, dir, fmt.Sprintf("usage of project %d: quotactl_fd Q_GETQUOTA", id), err)
	}
	return Usage{
		Bytes:      clampInt64(dq.Curspace),
		Inodes:     clampInt64(dq.Curinodes),
		Limit:      clampInt64(dq.Bhardlimit, quotaBlock),
		FreeInodes: -1,
	}, nil
}

// quotactlErr words a failed quotactl_fd: ENOSYS (no quotactl, or no
// quotas on this filesystem) and ESRCH (project quotas off) are
// ErrUnsupported, which ProbeProject explains in detail.
func quotactlErr(fd int, dir, op string, err error) error {
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%s: %s (%s): project quotas %w: %w", op, dir, fsTypeName(fd), ErrUnsupported, err)
	}
	return fmt.Errorf("%s: %s (%s): %w", op, dir, fsTypeName(fd), err)
}

// clampInt64 is the product of v and the factors as an int64, saturating
// rather than wrapping: the kernel's "no limit" is a huge value on some
// filesystems, and a negative Usage would mean nothing.
func clampInt64(v uint64, factors ...uint64) int64 {
	for _, f := range factors {
		if f != 0 && v > math.MaxInt64/f {
			return math.MaxInt64
		}
		v *= f
	}
	if v > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(v)
}
