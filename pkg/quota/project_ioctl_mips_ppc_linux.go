//go:build linux && (mips || mipsle || mips64 || mips64le || ppc64 || ppc64le || sparc64)

package quota

// FS_IOC_FSGETXATTR is _IOR('X', 31, struct fsxattr) and FS_IOC_FSSETXATTR
// _IOW('X', 32, struct fsxattr) in the ioctl encoding of mips, powerpc and
// sparc (direction in bits 29-31, read 2, write 4; 13 size bits).
const (
	fsIocFsgetxattr = 0x401c581f
	fsIocFssetxattr = 0x801c5820
)
