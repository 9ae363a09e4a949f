package overlay

import (
	"strings"
)

// lowerdirPlusFromProbe interprets setting "lowerdir+" as a flag (no value)
// on a fresh overlay fs_context. The three kernel generations answer
// differently, which tells them apart without mounting anything:
//
//   - 6.8+ parses overlay options natively and knows lowerdir+, which takes
//     a string: EINVAL, "Bad value for 'lowerdir+'".
//   - 6.5 to 6.7 parse natively but lack lowerdir+: EINVAL, "Unknown
//     parameter 'lowerdir+'".
//   - Before 6.5 overlayfs goes through the generic legacy shim, which
//     accepts any key and only fails later, in FSCONFIG_CMD_CREATE: nil.
//
// log is what the fs_context logged for the probe.
func lowerdirPlusFromProbe(err error, log []string) bool {
	if err == nil {
		return false
	}
	for _, m := range log {
		if strings.Contains(m, "Unknown parameter") {
			return false
		}
	}
	return true
}
