package overlay

import (
	"errors"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		opts []string
		want Flags
		err  bool
	}{
		{nil, DefaultFlags, false},
		{[]string{"ro", "noexec"}, Flags{NoSuid: true, NoDev: true, ReadOnly: true, NoExec: true}, false},
		{[]string{"noatime", "nodiratime"}, Flags{NoSuid: true, NoDev: true, Atime: AtimeNone, NoDirAtime: true}, false},
		{[]string{"strictatime", "relatime"}, DefaultFlags, false}, // the last atime option wins
		{[]string{"rw", "exec", " nosuid "}, DefaultFlags, false},
		{[]string{"suid"}, DefaultFlags, true},
		{[]string{"dev"}, DefaultFlags, true},
		{[]string{"noatim"}, DefaultFlags, true},
		{[]string{"uid=0"}, DefaultFlags, true},
	} {
		got, err := ParseFlags(DefaultFlags, tc.opts)
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrUnknownFlag)) {
			t.Errorf("ParseFlags(%q) error %v, want error %t", tc.opts, err, tc.err)
		}
		if got != tc.want {
			t.Errorf("ParseFlags(%q) = %+v, want %+v", tc.opts, got, tc.want)
		}
	}
	if s := (Flags{NoSuid: true, NoDev: true, Atime: AtimeNone}).String(); s != "nosuid,nodev,noatime" {
		t.Errorf("String = %q", s)
	}
}
