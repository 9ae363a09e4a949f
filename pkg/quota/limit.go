package quota

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// Method is how one volume's upper is limited; recorded with the volume,
// since a node's mode may change while its volumes live on.
type Method string

const (
	// MethodProject charges the upper to a project quota.
	MethodProject Method = "project"
	// MethodImage keeps the upper in a filesystem image of its own.
	MethodImage Method = "image"
)

// Limit is what a volume's record keeps of its limit.
type Limit struct {
	Bytes  int64  `json:"bytes"`
	Method Method `json:"method"`
	// Project is the project id, for MethodProject.
	Project uint32 `json:"project,omitempty"`
}

// IDRange is the project ids a node may give its volumes, both ends
// included: the --project-ids flag.
type IDRange struct{ First, Last uint32 }

// DefaultIDRange stays clear of the low ids administrators hand out in
// /etc/projid and of the kubelet's own quota ids.
var DefaultIDRange = IDRange{First: 2_000_000_000, Last: 2_099_999_999}

// ParseIDRange reads FIRST-LAST.
func ParseIDRange(s string) (IDRange, error) {
	a, b, ok := strings.Cut(s, "-")
	first, err1 := strconv.ParseUint(a, 10, 32)
	last, err2 := strconv.ParseUint(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || first == 0 || first > last {
		return IDRange{}, fmt.Errorf("project id range %q is not FIRST-LAST with 0 < FIRST <= LAST < 2^32", s)
	}
	return IDRange{First: uint32(first), Last: uint32(last)}, nil
}

func (r IDRange) String() string { return fmt.Sprintf("%d-%d", r.First, r.Last) }

// Options configure a Limiter.
type Options struct {
	Mode Mode
	// Dir is where the volumes live: project quotas must be enforced on
	// its filesystem.
	Dir        string
	ProjectIDs IDRange
	Image      ImageOptions
}

// Layout names the directories of a limited volume, relative to the
// volume's own directory.
const (
	// ImageFile is the filesystem image of a MethodImage volume.
	ImageFile = "upper.img"
	// ImageMount is where that image is mounted; the upper and work
	// directories are inside it.
	ImageMount = "upper"
)

// ImageOptions say how images are made.
type ImageOptions struct {
	// Mkfs is the mkfs.ext4 (mke2fs) to format with; a bare name is looked
	// up in PATH.
	Mkfs string
}

// Dir is where a volume's diff/ and work/ directories are, given its
// limit (nil: unlimited).
func Dir(volDir string, lim *Limit) string {
	if lim != nil && lim.Method == MethodImage {
		return filepath.Join(volDir, ImageMount)
	}
	return volDir
}
