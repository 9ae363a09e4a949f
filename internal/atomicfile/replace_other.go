//go:build !linux

package atomicfile

import "os"

// Replace moves tmp to path. Only Linux has the exchange that spares
// ext4's flush of a file renamed over another; elsewhere it is a rename.
func Replace(tmp, path string) error { return os.Rename(tmp, path) }
