package overlay

import "golang.org/x/sys/unix"

// flagBit is one attribute of Flags as the two mount APIs spell it.
type flagBit struct {
	on   bool
	attr uint64  // MOUNT_ATTR_* (fsmount, mount_setattr)
	ms   uintptr // MS_* (mount(2))
}

func (f Flags) bits() []flagBit {
	return []flagBit{
		{f.ReadOnly, unix.MOUNT_ATTR_RDONLY, unix.MS_RDONLY},
		{f.NoSuid, unix.MOUNT_ATTR_NOSUID, unix.MS_NOSUID},
		{f.NoDev, unix.MOUNT_ATTR_NODEV, unix.MS_NODEV},
		{f.NoExec, unix.MOUNT_ATTR_NOEXEC, unix.MS_NOEXEC},
		{f.NoDirAtime, unix.MOUNT_ATTR_NODIRATIME, unix.MS_NODIRATIME},
		{f.Atime == AtimeNone, unix.MOUNT_ATTR_NOATIME, unix.MS_NOATIME},
		{f.Atime == AtimeStrict, unix.MOUNT_ATTR_STRICTATIME, unix.MS_STRICTATIME},
	}
}

// attr is f as mount attributes (fsmount, mount_setattr).
func (f Flags) attr() uint64 {
	var a uint64
	for _, b := range f.bits() {
		if b.on {
			a |= b.attr
		}
	}
	return a
}

// ms is f as mount(2) flags.
func (f Flags) ms() uintptr {
	var m uintptr
	for _, b := range f.bits() {
		if b.on {
			m |= b.ms
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
