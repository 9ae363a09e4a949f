package record

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/layerset/layerset-csi/internal/atomicfile"
)

// inodes lists the inode numbers of every file in dir, hidden ones too.
func inodes(t *testing.T, dir string) []uint64 {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fi.Sys().(*syscall.Stat_t).Ino)
	}
	slices.Sort(out)
	return out
}

// With spares, records that come and go, as inline volumes' do, are
// written over the files of earlier ones: once warm, no file is created
// or deleted, and what the store holds reads as before.
func TestSparesReuseFiles(t *testing.T) {
	for _, d := range []atomicfile.Durability{atomicfile.Volatile, atomicfile.Durable} {
		dir := t.TempDir()
		s, err := Open(dir, Options[testRecord]{Spares: 4})
		if err != nil {
			t.Fatal(err)
		}
		cycle := func(i int) {
			t.Helper()
			id := fmt.Sprintf("vol-%d", i)
			// Long, then short: what a longer earlier record left past the
			// end must not survive.
			for _, r := range []*testRecord{{ID: id, Phase: "publishing", Path: strings.Repeat("/long", i%7+1)}, {ID: id, Phase: "published", Path: "/t"}} {
				if err := s.Save(id, r, d); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.Load(id)
			if err != nil || got == nil || got.Phase != "published" || got.Path != "/t" {
				t.Fatalf("durability %v: Load(%s) = %+v, %v", d, id, got, err)
			}
			if err := s.Remove(id, d); err != nil {
				t.Fatal(err)
			}
			if got, err := s.Load(id); got != nil || err != nil {
				t.Fatalf("after Remove, Load(%s) = %+v, %v", id, got, err)
			}
		}
		cycle(0)
		warm := inodes(t, dir)
		for i := 1; i < 20; i++ {
			cycle(i)
		}
		if got := inodes(t, dir); !slices.Equal(got, warm) {
			t.Errorf("durability %v: files changed over the cycles: %v, then %v", d, warm, got)
		}
		if recs, bad, err := s.List(); len(recs) != 0 || len(bad) != 0 || err != nil {
			t.Errorf("durability %v: List sees %d records, %d bad, %v; the kept files are not records", d, len(recs), len(bad), err)
		}
		if n := len(inodes(t, dir)); n > 4 {
			t.Errorf("durability %v: %d files kept, more than Spares (4)", d, n)
		}
	}
}

// At most Spares files are kept, however many records are removed.
func TestSparesBounded(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options[testRecord]{Spares: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		id := fmt.Sprint(i)
		if err := s.Save(id, &testRecord{ID: id, Phase: "x"}, atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		if err := s.Remove(fmt.Sprint(i), atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
	}
	hidden, err := filepath.Glob(filepath.Join(dir, atomicfile.TempGlob))
	if err != nil || len(hidden) != 3 {
		t.Errorf("%d files kept (%v), want 3", len(hidden), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("%d entries in the directory, want only the 3 kept files", len(entries))
	}
}

// Kept files another process removes (its Open, once they are older than
// StaleTemp), or a restart leaves, cost nothing but their reuse: saves go
// on, and the next Open removes what is left.
func TestSparesGone(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options[testRecord]{Spares: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := fmt.Sprint(i)
		if err := s.Save(id, &testRecord{ID: id, Phase: "x"}, atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(id, &testRecord{ID: id, Phase: "y"}, atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Remove("0", atomicfile.Volatile); err != nil {
		t.Fatal(err)
	}
	hidden, _ := filepath.Glob(filepath.Join(dir, atomicfile.TempGlob))
	if len(hidden) == 0 {
		t.Fatal("no file kept; the test cannot remove one")
	}
	for _, h := range hidden {
		if err := os.Remove(h); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"1", "9"} {
		if err := s.Save(id, &testRecord{ID: id, Phase: "z"}, atomicfile.Volatile); err != nil {
			t.Fatalf("save after the kept files went: %v", err)
		}
		if got, err := s.Load(id); err != nil || got == nil || got.Phase != "z" {
			t.Fatalf("Load(%s) = %+v, %v", id, got, err)
		}
	}
	if _, err := Open(dir, Options[testRecord]{Spares: 4}); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, atomicfile.TempGlob)); len(left) != 0 {
		t.Errorf("Open left kept files of the store before it: %v", left)
	}
	recs, _, err := s.List()
	if err != nil || len(recs) != 3 {
		t.Errorf("after a restart: %d records, %v; want 1, 2 and 9", len(recs), err)
	}
}

// A kept file is written over whatever mode it had: records are 0600.
func TestSparesMode(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options[testRecord]{Spares: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path("a"), []byte(`{"id":"a","phase":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("a", atomicfile.Volatile); err != nil { // its 0644 file is kept
		t.Fatal(err)
	}
	if err := s.Save("b", &testRecord{ID: "b", Phase: "y"}, atomicfile.Volatile); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(s.Path("b")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("record written over a kept 0644 file: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

// A kept file longer than the record written over it holds the record
// and, at most maxPad bytes further, only white space, whoever wrote it
// before: the record reads back whole.
func TestSparesShorterRecords(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options[testRecord]{Spares: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, long := range []int{100, maxPad + 100} {
		// Another process's record, longer than the next one: its size is
		// not known to this store.
		big := fmt.Sprintf(`{"id":"old","phase":"x","path":%q}`, strings.Repeat("p", long))
		if err := os.WriteFile(s.Path("old"), []byte(big), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove("old", atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
		for _, phase := range []string{"short", "s"} { // then shorter than what this store wrote
			if err := s.Save("new", &testRecord{ID: "new", Phase: phase}, atomicfile.Volatile); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(s.Path("new"))
			if err != nil {
				t.Fatal(err)
			}
			body := strings.TrimRight(string(data), " ")
			if !strings.HasSuffix(body, "}") || len(data)-len(body) > maxPad {
				t.Errorf("record of %d bytes over one of %d: %d bytes of padding after %q", len(body), len(big), len(data)-len(body), body)
			}
			if got, err := s.Load("new"); err != nil || got == nil || got.Phase != phase {
				t.Errorf("Load = %+v, %v; want phase %s", got, err, phase)
			}
		}
		if err := s.Remove("new", atomicfile.Volatile); err != nil {
			t.Fatal(err)
		}
	}
}
