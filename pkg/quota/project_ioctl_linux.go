//go:build linux && !(mips || mipsle || mips64 || mips64le || ppc64 || ppc64le || sparc64)

package quota

// FS_IOC_FSGETXATTR is _IOR('X', 31, struct fsxattr) and FS_IOC_FSSETXATTR
// _IOW('X', 32, struct fsxattr) in the generic ioctl encoding of
// <asm-generic/ioctl.h> (direction in bits 30-31, read 2, write 1; 14 size
// bits), which every architecture but mips, powerpc and sparc uses.
const (
	fsIocFsgetxattr = 0x801c581f
	fsIocFssetxattr = 0x401c5820
)
