package rpc

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzRequirePath checks what RequirePath lets through to the node's
// mount code, whatever the caller of the CSI socket sends: an accepted
// path is absolute, clean and free of NUL bytes (which no syscall takes,
// so a path holding one could only fail later, with a less useful code);
// a refused one gets InvalidArgument.
func FuzzRequirePath(f *testing.F) {
	for _, s := range []string{
		"", "/", "rel", "/a/b", "/a/", "/a/../b", "/a/./b", "//a", "/a//b", "../x", ".", "/..",
		"/var/lib/kubelet/pods/0b1c/volumes/kubernetes.io~csi/tools/mount", "/a\nb", "/ä/ü",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		err := RequirePath("target_path", p)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("RequirePath(%q) = %v, want InvalidArgument", p, err)
			}
			return
		}
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Fatalf("RequirePath accepted %q, which is not a clean absolute path", p)
		}
		if strings.ContainsRune(p, 0) {
			t.Fatalf("RequirePath accepted %q, which contains a NUL byte", p)
		}
	})
}

// FuzzRequireMountCapability builds capabilities from fuzzed parts (access
// type, access mode, file system type, one mount flag) and checks that
// only a mount access type with a defined, non-UNKNOWN mode is accepted,
// that refusals are InvalidArgument, and that ReadOnlyMode holds only for
// the reader-only modes.
func FuzzRequireMountCapability(f *testing.F) {
	for _, mode := range csi.VolumeCapability_AccessMode_Mode_value {
		f.Add(uint8(1), mode, "ext4", "noatime")
		f.Add(uint8(2), mode, "", "")
	}
	f.Add(uint8(0), int32(1), "", "")
	f.Add(uint8(1), int32(99), "xfs", "suid")
	f.Add(uint8(1), int32(-1), "", "ro")
	f.Add(uint8(3), int32(1), "", "")
	f.Add(uint8(4), int32(1), "overlay", "")
	f.Fuzz(func(t *testing.T, accessType uint8, mode int32, fsType, flag string) {
		var c *csi.VolumeCapability
		switch accessType % 5 {
		case 0: // no access type
			c = &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(mode)}}
		case 1:
			c = &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType, MountFlags: []string{flag}}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(mode)},
			}
		case 2:
			c = &csi.VolumeCapability{
				AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
				AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_Mode(mode)},
			}
		case 3: // no capability at all
		case 4: // a mount access type without an access mode
			c = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}}}
		}

		err := RequireMountCapability(c)
		_, defined := csi.VolumeCapability_AccessMode_Mode_name[mode]
		want := accessType%5 == 1 && defined && mode != int32(csi.VolumeCapability_AccessMode_UNKNOWN)
		if (err == nil) != want {
			t.Fatalf("RequireMountCapability(access type %d, mode %d, fs %q, flag %q) = %v, want accepted=%t",
				accessType%5, mode, fsType, flag, err, want)
		}
		if err != nil && status.Code(err) != codes.InvalidArgument {
			t.Fatalf("RequireMountCapability refused with %v, want InvalidArgument", err)
		}

		readOnly := ReadOnlyMode(c)
		m := c.GetAccessMode().GetMode()
		wantRO := m == csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY || m == csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY
		if readOnly != wantRO {
			t.Fatalf("ReadOnlyMode(mode %v) = %t, want %t", m, readOnly, wantRO)
		}
	})
}
