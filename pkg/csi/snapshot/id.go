package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The parts of a local snapshot id (see the package comment).
const (
	idLayerHex = 24 // hex digits of the committed layer's diff_id
	idNameHex  = 16 // hex digits of sha256(name)
	// maxIDBytes is CSI's bound on ids.
	maxIDBytes = 128
	// MaxNodeIDBytes is the longest node id a local snapshot id holds.
	MaxNodeIDBytes = maxIDBytes - idLayerHex - 1 - idNameHex - 1
	// MaxRepositoryBytes is the longest repository (registry host and
	// path) a pushed snapshot's id, REPOSITORY@sha256:HEX, holds.
	MaxRepositoryBytes = maxIDBytes - len("@sha256:") - 64
)

var (
	nodeIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	localIDPattern = regexp.MustCompile(`^([0-9a-f]{24})\.([0-9a-f]{16})@([A-Za-z0-9][A-Za-z0-9._-]*)$`)
)

// checkNodeID tells whether a node id can be part of snapshot ids.
func checkNodeID(id string) error {
	if len(id) > MaxNodeIDBytes || !nodeIDPattern.MatchString(id) {
		return fmt.Errorf("node id %q cannot name snapshots: want at most %d bytes of [A-Za-z0-9._-], starting with a letter or digit", id, MaxNodeIDBytes)
	}
	return nil
}

// localID is the id of a snapshot kept on node nodeID.
func localID(diffID v1.Hash, name, nodeID string) string {
	return diffID.Hex[:idLayerHex] + "." + nameHash(name)[:idNameHex] + "@" + nodeID
}

func nameHash(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// wellFormedID reports whether id can be one this service made: a local
// id (of any node) or a digest-pinned reference.
func wellFormedID(id string) bool {
	if localIDPattern.MatchString(id) {
		return true
	}
	i := strings.LastIndex(id, "@sha256:")
	return len(id) <= maxIDBytes && i > 0 && strings.Contains(id[:i], "/") && isHex(id[i+len("@sha256:"):], 64)
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

// validTag matches what a registry takes as a tag.
var validTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// tagFor is the tag a pushed snapshot gets: its name, or a hash of a name
// that is no valid tag.
func tagFor(name string) string {
	if validTag.MatchString(name) {
		return name
	}
	return "snapshot-" + nameHash(name)[:32]
}
