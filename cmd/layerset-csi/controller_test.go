package main

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestControllerResizerFlag(t *testing.T) {
	tests := []struct {
		value string
		want  resizerMode
		err   string
	}{
		{value: "builtin", want: resizerBuiltin},
		{value: "none", want: resizerNone},
		{value: "external", err: `"external" is not builtin or none`},
		{value: "", err: `"" is not builtin or none`},
		{value: "Builtin", err: "not builtin or none"},
	}
	for _, tt := range tests {
		m := resizerNone
		err := m.Set(tt.value)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("--resizer %q: %v, want an error saying %q", tt.value, err, tt.err)
		case tt.err == "" && (err != nil || m != tt.want):
			t.Errorf("--resizer %q: %q, %v; want %q", tt.value, m, err, tt.want)
		}
	}
}

// The built-in resizer resizes claims: without Kubernetes it has none,
// and says so rather than doing nothing.
func TestControllerResizerNeedsClusterMode(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "controller", "--layersets", dir, "--resizer", "builtin",
		"--endpoint", filepath.Join(dir, "csi.sock"), "--state-dir", filepath.Join(dir, "state"))
	if err == nil || !strings.Contains(err.Error(), "--resizer builtin needs cluster mode") {
		t.Errorf("controller --layersets --resizer builtin: %v\n%s", err, out)
	}
}
