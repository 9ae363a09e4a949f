package record

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerset/layerset-csi/internal/atomicfile"
)

type testRecord struct {
	ID    string `json:"id"`
	Phase string `json:"phase"`
	Path  string `json:"path,omitempty"`
}

func TestStore(t *testing.T) {
	dir := t.TempDir()
	// A leftover of a save cut short is neither a record nor kept.
	if err := os.WriteFile(filepath.Join(dir, ".tmp-123"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options[testRecord]{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ".tmp-123")); !os.IsNotExist(err) {
		t.Errorf("Open left the temporary file: %v", err)
	}
	ids := []string{"pv-1", "csi-0123abcdef", "weird/id with spaces", "h-looks-hashed", strings.Repeat("x", 300), "..", "ünïcode"}
	files := map[string]string{}
	for _, id := range ids {
		f := s.Path(id)
		if filepath.Dir(f) != dir || strings.HasPrefix(filepath.Base(f), ".") {
			t.Errorf("record of %q at %s, outside the directory or hidden", id, f)
		}
		if other, dup := files[f]; dup {
			t.Errorf("%q and %q share the record %s", id, other, f)
		}
		files[f] = id
		if err := s.Save(id, &testRecord{ID: id, Phase: "staged"}, atomicfile.Durable); err != nil {
			t.Fatal(err)
		}
		got, err := s.Load(id)
		if err != nil || got == nil || got.ID != id || got.Phase != "staged" {
			t.Fatalf("Load(%q) = %+v, %v", id, got, err)
		}
	}
	if filepath.Base(s.Path("pv-1")) != "pv-1.json" {
		t.Errorf("a readable id is not kept readable: %s", s.Path("pv-1"))
	}
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	recs, bad, err := s.List()
	if err != nil || len(recs) != len(ids) || len(bad) != 1 {
		t.Errorf("List: %d records, %d bad, %v; want %d and 1", len(recs), len(bad), err, len(ids))
	}
	for _, id := range ids {
		if err := s.Remove(id, atomicfile.Durable); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Load(id); got != nil || err != nil {
			t.Errorf("after Remove, Load(%q) = %+v, %v", id, got, err)
		}
	}
	if err := s.Remove("never-there", atomicfile.Volatile); err != nil {
		t.Errorf("Remove of a missing record: %v", err)
	}
}

// A record under another id's file name is not taken for that id's, and
// Check refuses what the caller cannot use.
func TestStoreRefuses(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options[testRecord]{Check: func(r *testRecord) error {
		if r.Phase == "" {
			return os.ErrInvalid
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("a"), []byte(`{"id":"b","phase":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load("a"); err == nil || !strings.Contains(err.Error(), `holds volume "b"`) {
		t.Errorf("Load of another id's record = %+v, %v", got, err)
	}
	for name, data := range map[string]string{"c": `{"id":"c"}`, "d": `{"phase":"x"}`} {
		if err := os.WriteFile(s.Path(name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Load(name); err == nil {
			t.Errorf("Load(%s) of %s = %+v, want an error", name, data, got)
		}
	}
}

// Temporary files younger than StaleTemp may be another process's save in
// progress: Open keeps them.
func TestOpenKeepsFreshTemp(t *testing.T) {
	dir := t.TempDir()
	fresh, old := filepath.Join(dir, ".tmp-fresh"), filepath.Join(dir, ".tmp-old")
	for _, p := range []string{fresh, old} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options[testRecord]{StaleTemp: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file removed: %v", err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale temporary file kept: %v", err)
	}
}

// A record saved again is replaced whole and leaves no temporary file.
func TestSaveReplaces(t *testing.T) {
	for _, d := range []atomicfile.Durability{atomicfile.Volatile, atomicfile.Durable} {
		dir := t.TempDir()
		s, err := Open(dir, Options[testRecord]{})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*testRecord{{ID: "v", Phase: "publishing", Path: "/a/much/longer/path/than/the/next/one"}, {ID: "v", Phase: "published", Path: "/t"}} {
			if err := s.Save("v", r, d); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Load("v")
		if err != nil || got == nil || got.Phase != "published" || got.Path != "/t" {
			t.Fatalf("durability %v: Load = %+v, %v; want the second save", d, got, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("durability %v: want only the record in the directory, got %d entries", d, len(entries))
		}
	}
}
