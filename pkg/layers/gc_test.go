package layers

import (
	"testing"
	"time"
)

func TestGCVictims(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	layer := func(name string, size int64, users int, age time.Duration) Layer {
		l := Layer{LastUsed: t0.Add(-age), Users: users}
		l.DiffID, l.Size = name, size
		return l
	}
	all := []Layer{
		layer("recent", 100, 0, time.Minute),
		layer("in-use", 1000, 2, 48*time.Hour),
		layer("oldest", 100, 0, 24*time.Hour),
		layer("older", 100, 0, time.Hour),
	}
	total := int64(1300)
	tests := []struct {
		budget int64
		want   []string
	}{
		{budget: 2000, want: nil},
		{budget: 1300, want: nil},
		{budget: 1250, want: []string{"oldest"}},
		{budget: 1150, want: []string{"oldest", "older"}},
		{budget: 0, want: []string{"oldest", "older", "recent"}}, // never the layer in use
	}
	spareOldest := func(l Layer) bool { return l.DiffID == "oldest" }
	if got := gcVictims(all, total, 0, spareOldest); len(got) != 2 || got[0].DiffID != "older" || got[1].DiffID != "recent" {
		t.Errorf("with oldest spared: removed %v, want older and recent", got)
	}
	for _, tt := range tests {
		got := gcVictims(all, total, tt.budget, nil)
		var names []string
		for _, l := range got {
			names = append(names, l.DiffID)
		}
		if len(names) != len(tt.want) {
			t.Errorf("budget %d: removed %v, want %v", tt.budget, names, tt.want)
			continue
		}
		for i := range names {
			if names[i] != tt.want[i] {
				t.Errorf("budget %d: removed %v, want %v", tt.budget, names, tt.want)
			}
		}
	}
}
