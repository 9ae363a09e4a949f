//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo: the suite runs on the
// node, in the host's mount namespace, where the kubelet's and the driver's
// mounts propagate.
type mountEntry struct {
	Target   string
	FSType   string
	Source   string
	ReadOnly bool              // the mount's own ro flag (a read-only bind)
	Super    map[string]string // superblock options: upperdir, lowerdir, ...
}

// Upper is the overlay's upperdir, "" for a read-only overlay.
func (m mountEntry) Upper() string { return m.Super["upperdir"] }

func readMounts() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	return parseMountInfo(string(b))
}

// parseMountInfo parses the mountinfo format of proc(5):
// ID PARENT MAJ:MIN ROOT TARGET OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
func parseMountInfo(s string) ([]mountEntry, error) {
	var out []mountEntry
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 6 || sep < 0 || sep+3 > len(f) {
			return nil, fmt.Errorf("mountinfo line %q: want ID PARENT DEV ROOT TARGET OPTS ... - FSTYPE SOURCE [SUPEROPTS]", line)
		}
		m := mountEntry{Target: unescape(f[4]), FSType: f[sep+1], Source: unescape(f[sep+2]), Super: map[string]string{}}
		for _, o := range strings.Split(f[5], ",") {
			m.ReadOnly = m.ReadOnly || o == "ro"
		}
		if sep+3 < len(f) {
			for _, o := range strings.Split(f[sep+3], ",") {
				k, v, _ := strings.Cut(o, "=")
				m.Super[k] = unescape(v)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// unescape undoes mountinfo's octal escapes of space, tab, newline and \.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}
