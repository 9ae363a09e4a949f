package driver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateDir(t *testing.T) {
	s := stateDir{dir: t.TempDir()}
	ids := []string{"pv-1", "csi-0123abcdef", "weird/id with spaces", "h-looks-hashed", strings.Repeat("x", 300), "..", "ünïcode"}
	names := map[string]string{}
	for _, id := range ids {
		f := s.file(id)
		if filepath.Dir(f) != s.dir || strings.HasPrefix(filepath.Base(f), ".") {
			t.Errorf("record of %q at %s, outside the state directory or hidden", id, f)
		}
		if other, dup := names[f]; dup {
			t.Errorf("%q and %q share the record %s", id, other, f)
		}
		names[f] = id
		rec := &volumeRecord{ID: id, Kind: kindPersistent, Phase: phaseStaged, MountPath: "/s", Targets: []targetRecord{{Path: "/t", Phase: phasePublished}}}
		if err := s.save(rec); err != nil {
			t.Fatal(err)
		}
		got, err := s.load(id)
		if err != nil || got == nil || got.ID != id || got.target("/t") == nil {
			t.Fatalf("load(%q) = %+v, %v", id, got, err)
		}
	}
	if filepath.Base(s.file("pv-1")) != "pv-1.json" {
		t.Errorf("a readable id is not kept readable: %s", s.file("pv-1"))
	}
	// A leftover of a save cut short is neither a record nor kept.
	if err := os.WriteFile(filepath.Join(s.dir, ".tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "broken.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, bad, err := s.list()
	if err != nil || len(recs) != len(ids) || len(bad) != 1 {
		t.Errorf("list: %d records, %d bad, %v; want %d and 1", len(recs), len(bad), err, len(ids))
	}
	if err := s.removeTemp(); err != nil || exists(filepath.Join(s.dir, ".tmp-123")) {
		t.Errorf("removeTemp: %v", err)
	}
	for _, id := range ids {
		if err := s.remove(id, true); err != nil {
			t.Fatal(err)
		}
		if got, err := s.load(id); got != nil || err != nil {
			t.Errorf("after remove, load(%q) = %+v, %v", id, got, err)
		}
	}
}

// A record saved again is replaced whole (by exchange, for the ephemeral
// kind) and leaves no temporary file behind.
func TestStateSaveReplaces(t *testing.T) {
	for _, kind := range []volumeKind{kindEphemeral, kindPersistent} {
		t.Run(string(kind), func(t *testing.T) {
			s := stateDir{dir: t.TempDir()}
			rec := &volumeRecord{ID: "v", Kind: kind, Phase: phasePublishing, MountPath: "/a/much/longer/path/than/the/next/one"}
			for _, p := range []phase{phasePublishing, phasePublished} {
				rec.Phase = p
				if p == phasePublished {
					rec.MountPath = "/t"
				}
				if err := s.save(rec); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.load("v")
			if err != nil || got == nil || got.Phase != phasePublished || got.MountPath != "/t" {
				t.Fatalf("load = %+v, %v; want the second save", got, err)
			}
			if entries, _ := os.ReadDir(s.dir); len(entries) != 1 {
				t.Errorf("want only the record in the state directory, got %d entries", len(entries))
			}
		})
	}
}
