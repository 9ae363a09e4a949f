package volumeid

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestName(t *testing.T) {
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "h-" + hex.EncodeToString(sum[:20])
	}
	for _, tc := range []struct{ id, want string }{
		{"pvc-0b1c", "pvc-0b1c"},
		{"csi-9f8e.7_a", "csi-9f8e.7_a"},
		{"a/b", hash("a/b")},
		{"../x", hash("../x")},
		{"", hash("")},
		{".hidden", hash(".hidden")},
		{strings.Repeat("a", 129), hash(strings.Repeat("a", 129))},
		// An id that looks like another id's hash is hashed itself.
		{hash("a/b"), hash(hash("a/b"))},
		// An id that names another volume's init layer is hashed.
		{"pvc-1-init", hash("pvc-1-init")},
	} {
		if got := Name(tc.id); got != tc.want {
			t.Errorf("Name(%q) = %q, want %q", tc.id, got, tc.want)
		}
		if !IsName(Name(tc.id)) {
			t.Errorf("IsName(Name(%q)) = false", tc.id)
		}
	}
}

// No two ids share a name: a readable id is never a hash, nor ends like
// an init layer.
func FuzzNameInjective(f *testing.F) {
	f.Add("a/b", "h-")
	f.Add("pvc-1", "pvc-1-init")
	f.Fuzz(func(t *testing.T, a, b string) {
		if a != b && Name(a) == Name(b) {
			t.Fatalf("ids %q and %q share the name %q", a, b, Name(a))
		}
		if n := Name(a); strings.HasSuffix(n, reservedSuffix) || !IsName(n) {
			t.Fatalf("Name(%q) = %q is no safe name", a, n)
		}
	})
}
