//go:build !linux

package record

import "os"

// replaceExisting moves tmp to path. Only Linux has the exchange that keeps
// the old record's file; elsewhere it is a rename, and exchanged is false.
func replaceExisting(tmp, path string) (exchanged bool, err error) {
	return false, os.Rename(tmp, path)
}

// replaceNew is replaceExisting.
func replaceNew(tmp, path string) (exchanged bool, err error) { return replaceExisting(tmp, path) }
