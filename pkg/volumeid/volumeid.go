// Package volumeid is the one rule for turning a volume id (or a volume
// name) into a file name: the layer store's volume directories, the node's
// and the controller's records, and the controller's ids all follow it.
package volumeid

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
)

// readable is what an id may look like to be used as a file name as it is.
var readable = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// hashedPrefix marks names made by hashing. A readable id that starts with
// it is hashed too, so no id's name can be another id's hash: the mapping
// is injective (up to SHA-256 collisions).
const hashedPrefix = "h-"

// reservedSuffix ends the name of a volume's init layer in the layer
// store (vol-ID-init beside vol-ID); a readable id ending in it is hashed,
// so that no volume's directory is another volume's init layer.
const reservedSuffix = "-init"

// Name maps an id to its file name. A readable id is its own name, so an
// operator finds a volume by the id kubelet logs; any other id (CSI allows
// any UTF-8 string) is hashed to "h-" and 40 hex digits.
func Name(id string) string {
	if readable.MatchString(id) && !strings.HasPrefix(id, hashedPrefix) && !strings.HasSuffix(id, reservedSuffix) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hashedPrefix + hex.EncodeToString(sum[:20])
}

// IsName reports whether s is a name Name can return: safe as a file name
// as it is.
func IsName(s string) bool { return readable.MatchString(s) }
