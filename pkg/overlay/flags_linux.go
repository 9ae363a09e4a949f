package overlay

import "golang.org/x/sys/unix"

// attr is f as mount attributes (fsmount, mount_setattr).
func (f Flags) attr() uint64 {
	var a uint64
	for _, b := range []struct {
		on  bool
		bit uint64
	}{
		{f.ReadOnly, unix.MOUNT_ATTR_RDONLY}, {f.NoSuid, unix.MOUNT_ATTR_NOSUID}, {f.NoDev, unix.MOUNT_ATTR_NODEV},
		{f.NoExec, unix.MOUNT_ATTR_NOEXEC}, {f.NoDirAtime, unix.MOUNT_ATTR_NODIRATIME},
		{f.Atime == AtimeNone, unix.MOUNT_ATTR_NOATIME}, {f.Atime == AtimeStrict, unix.MOUNT_ATTR_STRICTATIME},
	} {
		if b.on {
			a |= b.bit
		}
	}
	return a
}

// ms is f as mount(2) flags.
func (f Flags) ms() uintptr {
	var m uintptr
	for _, b := range []struct {
		on  bool
		bit uintptr
	}{
		{f.ReadOnly, unix.MS_RDONLY}, {f.NoSuid, unix.MS_NOSUID}, {f.NoDev, unix.MS_NODEV},
		{f.NoExec, unix.MS_NOEXEC}, {f.NoDirAtime, unix.MS_NODIRATIME},
		{f.Atime == AtimeNone, unix.MS_NOATIME}, {f.Atime == AtimeStrict, unix.MS_STRICTATIME},
	} {
		if b.on {
			m |= b.bit
		}
	}
	return m
}

// setattr is f for mount_setattr: the bits to set, and the atime field
// cleared first, as the kernel wants a whole atime policy at once.
func (f Flags) setattr() unix.MountAttr {
	a := unix.MountAttr{Attr_set: f.attr()}
	if f.Atime != AtimeRelatime {
		a.Attr_clr = unix.MOUNT_ATTR__ATIME
	}
	return a
}
