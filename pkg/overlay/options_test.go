package overlay

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"auto", ModeAuto, false},
		{"fsconfig", ModeFSConfig, false},
		{"legacy", ModeLegacy, false},
		{"", 0, true},
		{"Auto", 0, true},
		{"mount", 0, true},
	} {
		got, err := ParseMode(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "auto, fsconfig or legacy") {
			t.Errorf("ParseMode(%q) error %q does not list the valid modes", tc.in, err)
		}
	}
	if got := Mode(7).String(); got != "Mode(7)" {
		t.Errorf("Mode(7).String() = %q", got)
	}
}

func FuzzParseMode(f *testing.F) {
	for _, s := range []string{"auto", "fsconfig", "legacy", "", "Mode(1)"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMode(s)
		if err != nil {
			return
		}
		if m.String() != s {
			t.Fatalf("ParseMode(%q) = %v, which prints as %q", s, m, m.String())
		}
	})
}

// lowers returns n Docker-style lower paths, l/ plus a 26-character ID.
func lowers(n int) []string {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = fmt.Sprintf("l/%026d", i)
	}
	return ls
}

func TestValidate(t *testing.T) {
	const dir = "/var/lib/layerset/overlay2"
	for _, tc := range []struct {
		name string
		c    Config
		want string // substring of the error; "" for valid
	}{
		{"one lower", Config{Dir: dir, Lowers: lowers(1)}, ""},
		{"max lowers with upper", Config{Dir: dir, Lowers: lowers(MaxLowers), Upper: "c/diff", Work: "c/work"}, ""},
		{"dots inside a name", Config{Dir: dir, Lowers: []string{"l/a..b", "x/.hidden"}}, ""},
		{"no lowers", Config{Dir: dir}, "no lower layers, need 1 to 500"},
		{"too many lowers", Config{Dir: dir, Lowers: lowers(MaxLowers + 1)}, "501 lower layers, the kernel allows at most 500"},
		{"empty dir", Config{Lowers: lowers(2)}, `Dir "" must be a clean absolute path`},
		{"relative dir", Config{Dir: "var/lib", Lowers: lowers(2)}, "clean absolute path"},
		{"unclean dir", Config{Dir: "/var/lib/", Lowers: lowers(2)}, "clean absolute path"},
		{"empty lower", Config{Dir: dir, Lowers: []string{"l/A", ""}}, `lower 1 "": empty path`},
		{"absolute lower", Config{Dir: dir, Lowers: []string{"/l/A"}}, "absolute path"},
		{"unclean lower", Config{Dir: dir, Lowers: []string{"l//A"}}, `clean form "l/A"`},
		{"trailing slash", Config{Dir: dir, Lowers: []string{"l/A/"}}, "not a clean path"},
		{"dot lower", Config{Dir: dir, Lowers: []string{"."}}, "names Dir itself"},
		{"escaping lower", Config{Dir: dir, Lowers: []string{"../etc"}}, "leaves Dir"},
		{"dotdot lower", Config{Dir: dir, Lowers: []string{".."}}, "leaves Dir"},
		{"comma", Config{Dir: dir, Lowers: []string{"l/A,upperdir=/etc"}}, `contains ','`},
		{"colon", Config{Dir: dir, Lowers: []string{"l/A:l/B"}}, `contains ':'`},
		{"backslash", Config{Dir: dir, Lowers: []string{`l/A\`}}, `contains '\\'`},
		{"nul", Config{Dir: dir, Lowers: []string{"l/A\x00"}}, `contains '\x00'`},
		{"upper without work", Config{Dir: dir, Lowers: lowers(1), Upper: "c/diff"}, "must be set together"},
		{"work without upper", Config{Dir: dir, Lowers: lowers(1), Work: "c/work"}, "must be set together"},
		{"bad upper", Config{Dir: dir, Lowers: lowers(1), Upper: "/c/diff", Work: "c/work"}, `Upper "/c/diff": absolute path`},
		{"bad work", Config{Dir: dir, Lowers: lowers(1), Upper: "c/diff", Work: "c/work,x"}, `Work "c/work,x": contains ','`},
		{"upper is work", Config{Dir: dir, Lowers: lowers(1), Upper: "c/diff", Work: "c/diff"}, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	err := Config{Dir: dir, Lowers: lowers(MaxLowers + 1)}.Validate()
	if !errors.Is(err, ErrTooManyLowers) {
		t.Errorf("Validate() with %d lowers = %v, want ErrTooManyLowers", MaxLowers+1, err)
	}
}

func TestLegacyData(t *testing.T) {
	const dir = "/var/lib/layerset/overlay2"
	for _, tc := range []struct {
		name     string
		c        Config
		pageSize int
		want     string // data, or the error's substring when wantErr
		wantErr  bool
	}{
		{
			name: "read-only", pageSize: 4096,
			c:    Config{Dir: dir, Lowers: []string{"l/A", "l/B"}},
			want: "lowerdir=l/A:l/B,index=off",
		},
		{
			name: "with upper", pageSize: 4096,
			c:    Config{Dir: dir, Lowers: []string{"l/A", "l/B"}, Upper: "D/diff", Work: "D/work"},
			want: "lowerdir=l/A:l/B,upperdir=D/diff,workdir=D/work,index=off",
		},
		{
			// len("lowerdir=l/A,index=off") == 22: fits a page of 23.
			name: "exactly page minus one", pageSize: 23,
			c:    Config{Dir: dir, Lowers: []string{"l/A"}},
			want: "lowerdir=l/A,index=off",
		},
		{
			name: "one byte over", pageSize: 22,
			c:       Config{Dir: dir, Lowers: []string{"l/A"}},
			want:    "1 lower layers need 22 bytes of mount data, 1 over the page size 22 (mount(2) keeps 21 bytes)",
			wantErr: true,
		},
		{
			// 9 + 500*28 + 499 + 10 bytes.
			name: "500 Docker-style layers", pageSize: 4096,
			c:       Config{Dir: dir, Lowers: lowers(500)},
			want:    "500 lower layers need 14518 bytes of mount data, 10423 over the page size 4096",
			wantErr: true,
		},
		{
			// 140 Docker-style layers take 9 + 140*29 - 1 + 10 = 4078 bytes.
			name: "140 Docker-style layers", pageSize: 4096,
			c:    Config{Dir: dir, Lowers: lowers(140)},
			want: "lowerdir=" + strings.Join(lowers(140), ":") + ",index=off",
		},
		{
			name: "141 Docker-style layers", pageSize: 4096,
			c:       Config{Dir: dir, Lowers: lowers(141)},
			want:    "141 lower layers need 4107 bytes",
			wantErr: true,
		},
		{
			name: "invalid config", pageSize: 4096,
			c:       Config{Dir: dir, Lowers: []string{"l/A,ro"}},
			want:    "contains ','",
			wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := legacyData(tc.c, tc.pageSize)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("legacyData() = %q, %v; want an error containing %q", got, err, tc.want)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("legacyData() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	_, err := LegacyData(Config{Dir: dir, Lowers: lowers(500)})
	if !errors.Is(err, ErrDataTooLong) {
		t.Errorf("LegacyData(500 lowers) = %v, want ErrDataTooLong", err)
	}
}

// FuzzLegacyData checks that no Config that Validate accepts can smuggle
// an option or a layer into the mount data.
func FuzzLegacyData(f *testing.F) {
	f.Add("l/A", "l/B", "D/diff", "D/work")
	f.Add("l/A", "l/B", "", "")
	f.Add("l/A,upperdir=/x", "l/B", "", "")
	f.Add("l/A:/etc", "l/B", "D/diff", "D/work,ro")
	f.Fuzz(func(t *testing.T, l1, l2, upper, work string) {
		c := Config{Dir: "/r", Lowers: []string{l1, l2}, Upper: upper, Work: work}
		data, err := legacyData(c, 1<<20)
		if err != nil {
			return
		}
		opts := strings.Split(data, ",")
		wantOpts := []string{"lowerdir=" + l1 + ":" + l2, "index=off"}
		if upper != "" {
			wantOpts = []string{wantOpts[0], "upperdir=" + upper, "workdir=" + work, "index=off"}
		}
		if strings.Join(opts, "\n") != strings.Join(wantOpts, "\n") {
			t.Fatalf("data %q splits into options %q, want %q", data, opts, wantOpts)
		}
		if got := strings.Split(strings.TrimPrefix(opts[0], "lowerdir="), ":"); len(got) != 2 {
			t.Fatalf("data %q names %d lowers, want 2", data, len(got))
		}
	})
}

func TestFSConfigParams(t *testing.T) {
	got, err := fsconfigParams(Config{Dir: "/r", Lowers: []string{"l/A", "l/B"}, Upper: "D/diff", Work: "D/work"})
	want := "source=overlay lowerdir+=/r/l/A lowerdir+=/r/l/B upperdir=/r/D/diff workdir=/r/D/work index=off"
	if err != nil || fmt.Sprint(got) != "["+want+"]" {
		t.Errorf("fsconfigParams(rw) = %v, %v; want [%s]", got, err, want)
	}

	got, err = fsconfigParams(Config{Dir: "/r", Lowers: []string{"l/A", "l/B"}})
	want = "source=overlay lowerdir+=/r/l/A lowerdir+=/r/l/B index=off ro"
	if err != nil || fmt.Sprint(got) != "["+want+"]" {
		t.Errorf("fsconfigParams(ro) = %v, %v; want [%s]", got, err, want)
	}

	// "/r/" + 252 bytes is the longest value fsconfig takes.
	long := strings.Repeat("x", 252)
	if _, err := fsconfigParams(Config{Dir: "/r", Lowers: []string{"l/A", long}}); err != nil {
		t.Errorf("fsconfigParams with a 255-byte path = %v, want nil", err)
	}
	_, err = fsconfigParams(Config{Dir: "/r", Lowers: []string{"l/A", long + "x"}})
	if err == nil || !strings.Contains(err.Error(), "lower 1: path") || !strings.Contains(err.Error(), "is 256 bytes, over fsconfig's limit of 255") {
		t.Errorf("fsconfigParams with a 256-byte path = %v, want an error naming lower 1, 256 and 255", err)
	}
	_, err = fsconfigParams(Config{Dir: "/r", Lowers: []string{"l/A"}, Upper: long + "x", Work: "w"})
	if err == nil || !strings.Contains(err.Error(), "upperdir: path") {
		t.Errorf("fsconfigParams with a 256-byte upper = %v, want an error naming upperdir", err)
	}
}

func TestLowerdirPlusFromProbe(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		log  []string
		want bool
	}{
		{"6.8+ wants a string", syscall.EINVAL, []string{"e overlay: Bad value for 'lowerdir+'"}, true},
		{"6.5-6.7 does not know it", syscall.EINVAL, []string{"e overlay: Unknown parameter 'lowerdir+'"}, false},
		{"legacy shim accepts anything", nil, nil, false},
	} {
		if got := lowerdirPlusFromProbe(tc.err, tc.log); got != tc.want {
			t.Errorf("%s: lowerdirPlusFromProbe(%v, %q) = %v, want %v", tc.name, tc.err, tc.log, got, tc.want)
		}
	}
}
