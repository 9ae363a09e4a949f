// Package version reports the build's version.
package version

import "runtime/debug"

// override is set with -ldflags "-X .../internal/version.override=v1.2.3"
// by release builds; otherwise the module version from build info is used.
var override string

// Get returns the version of this binary.
func Get() string {
	if override != "" {
		return override
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}
