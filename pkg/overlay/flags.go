package overlay

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownFlag is returned by ParseFlags for a mount option it does not
// know or does not allow.
var ErrUnknownFlag = errors.New("unsupported mount option")

// Atime is the access time policy of a mount.
type Atime int

const (
	// AtimeRelatime updates access times at most once a day, the kernel's
	// default.
	AtimeRelatime Atime = iota
	// AtimeNone never updates access times (noatime).
	AtimeNone
	// AtimeStrict updates them at every access (strictatime).
	AtimeStrict
)

// Flags are the per-mount attributes of a volume, as mount(8) names them.
type Flags struct {
	NoSuid     bool  `json:"nosuid,omitempty"`
	NoDev      bool  `json:"nodev,omitempty"`
	NoExec     bool  `json:"noexec,omitempty"`
	ReadOnly   bool  `json:"ro,omitempty"`
	NoDirAtime bool  `json:"nodiratime,omitempty"`
	Atime      Atime `json:"atime,omitempty"`
}

// DefaultFlags are what a volume gets before its options: image trees are
// data, so their setuid bits and device nodes mean nothing on the node
// (a LayerSet that needs setuid opts in).
var DefaultFlags = Flags{NoSuid: true, NoDev: true}

// knownFlags lists what ParseFlags accepts, for its error message.
const knownFlags = "ro, rw, nosuid, nodev, noexec, exec, noatime, relatime, strictatime, nodiratime"

// ParseFlags applies mount options (a PersistentVolume's or
// StorageClass's mountOptions, the CSI capability's mount_flags) to base.
// Options that would loosen what the plugin enforces are refused: suid
// (a LayerSet's spec.allowSetuid is the way), dev; so is anything unknown,
// rather than ignored: a misspelt option would otherwise do nothing.
func ParseFlags(base Flags, opts []string) (Flags, error) {
	f := base
	for _, o := range opts {
		switch strings.TrimSpace(o) {
		case "ro":
			f.ReadOnly = true
		case "rw", "exec":
			// the defaults: a volume is writable and executable unless told
		case "nosuid":
			f.NoSuid = true
		case "nodev":
			f.NoDev = true
		case "noexec":
			f.NoExec = true
		case "noatime":
			f.Atime = AtimeNone
		case "relatime":
			f.Atime = AtimeRelatime
		case "strictatime":
			f.Atime = AtimeStrict
		case "nodiratime":
			f.NoDirAtime = true
		case "suid":
			return base, fmt.Errorf("%w %q: setuid binaries are allowed by the LayerSet (spec.allowSetuid: true), not by a mount option", ErrUnknownFlag, o)
		case "dev":
			return base, fmt.Errorf("%w %q: device nodes are never honoured in a LayerSet volume", ErrUnknownFlag, o)
		default:
			return base, fmt.Errorf("%w %q: this driver takes %s", ErrUnknownFlag, o, knownFlags)
		}
	}
	return f, nil
}

// String renders f as mount options, e.g. "nosuid,nodev".
func (f Flags) String() string {
	var out []string
	for _, o := range []struct {
		on   bool
		name string
	}{
		{f.ReadOnly, "ro"}, {f.NoSuid, "nosuid"}, {f.NoDev, "nodev"}, {f.NoExec, "noexec"},
		{f.Atime == AtimeNone, "noatime"}, {f.Atime == AtimeStrict, "strictatime"}, {f.NoDirAtime, "nodiratime"},
	} {
		if o.on {
			out = append(out, o.name)
		}
	}
	return strings.Join(out, ",")
}
