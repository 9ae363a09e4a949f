//go:build e2e

package e2e

import "testing"

// TestE2E runs the scenarios in order on one cluster: the install and the
// example LayerSets first, since the others use them, and the upgrade and
// uninstall last.
func TestE2E(t *testing.T) {
	c := newCluster(t)
	for _, s := range []struct {
		name     string
		run      func(*testing.T, *cluster)
		required bool // the later scenarios cannot run without it
	}{
		{"install", testInstall, true},                     // 1
		{"layersets", testLayerSets, true},                 // 2
		{"inline", testInlineVolume, false},                // 3
		{"static-pv", testStaticPV, false},                 // 4
		{"provisioned", testProvisioned, false},            // 5
		{"readonly-shared", testReadOnlyShared, false},     // 6
		{"plugin-restart", testPluginRestart, false},       // 7
		{"prefetch", testPrefetch, false},                  // 8
		{"bad-layersets", testBadLayerSets, false},         // 10
		{"sizes", testSizes, false},                        // 11
		{"timings", testTimings, false},                    //
		{"controller-steady", testControllerSteady, false}, //
		{"upgrade-uninstall", testUpgradeUninstall, false}, // 9
	} {
		if !t.Run(s.name, func(t *testing.T) { s.run(t, c) }) && s.required {
			t.Fatalf("scenario %s failed; the others need it", s.name)
		}
	}
}
