package source

import (
	"strings"
	"testing"
)

func TestParseContentRange(t *testing.T) {
	for h, want := range map[string]contentRange{
		"bytes 0-0/1":                      {0, 0, 1},
		"bytes 0-1048575/4194304":          {0, 1048575, 4194304},
		"bytes 5-9/*":                      {5, 9, -1},
		"Bytes 5-9/10":                     {5, 9, 10},
		"bytes 0-999999999999999999/*":     {0, 999999999999999999, -1},
		"bytes 100-199/999999999999999999": {100, 199, 999999999999999999},
		"BYTES 7-7/8":                      {7, 7, 8},
	} {
		got, err := parseContentRange(h)
		if err != nil || got != want {
			t.Errorf("parseContentRange(%q) = %+v, %v; want %+v", h, got, err, want)
		}
	}
	for _, h := range []string{
		"", "bytes", "bytes ", "bytes 0-9", "bytes 0-9/", "bytes -9/10", "bytes 0-/10", "bytes 9-0/10",
		"bytes 0-10/10", "bytes */10", "bytes +1-2/3", "bytes 1-+2/3", "bytes 1-2/+3", "bytes 1-2/-3",
		"bytes 0x1-2/3", "bytes 1 -2/3", "bytes  1-2/3", "bytes 1-2/3 ", "bytes 1_0-20/30",
		"bytes 0-1000000000000000000/*", "items 0-1/2", "bytes\x001-2/3", "bytes 1-2-3/4", "bytes 1-2/3/4",
	} {
		if got, err := parseContentRange(h); err == nil {
			t.Errorf("parseContentRange(%q) = %+v, want an error", h, got)
		}
	}
}

// FuzzContentRange: Content-Range comes from the network. Whatever it says,
// the parser must not panic, and what it accepts must be a range a blob can
// have, which prints back to a header that parses the same.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-0/1", "bytes 5-9/*", "bytes 9-0/10", "bytes 0-1048575/4194304", "bytes */10", "Bytes 1-2/3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		cr, err := parseContentRange(h)
		if err != nil {
			if !strings.Contains(err.Error(), "Content-Range") {
				t.Fatalf("error %q does not say what it is about", err)
			}
			return
		}
		if cr.first < 0 || cr.first > cr.last || cr.size < -1 || cr.size >= 0 && cr.last >= cr.size {
			t.Fatalf("parseContentRange(%q) = %+v, not a range of a blob", h, cr)
		}
		again, err := parseContentRange(cr.String())
		if err != nil || again != cr {
			t.Fatalf("%q parsed to %+v, printed as %q, which parses to %+v, %v", h, cr, cr.String(), again, err)
		}
	})
}
