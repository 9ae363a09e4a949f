package assemble

import (
	"errors"
	"testing"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/overlay"
)

func TestMountFlags(t *testing.T) {
	ls := func(allow bool) *v1alpha1.LayerSet {
		l := &v1alpha1.LayerSet{Spec: v1alpha1.LayerSetSpec{AllowSetuid: allow}}
		l.Name = "tools"
		return l
	}
	for _, tc := range []struct {
		name    string
		allow   bool
		options []string
		want    overlay.Flags
		err     bool
	}{
		{"defaults", false, nil, overlay.Flags{NoSuid: true, NoDev: true}, false},
		{"setuid allowed", true, nil, overlay.Flags{NoDev: true}, false},
		{"setuid allowed, nosuid asked", true, []string{"nosuid"}, overlay.Flags{NoSuid: true, NoDev: true}, false},
		{"options add", false, []string{"noexec"}, overlay.Flags{NoSuid: true, NoDev: true, NoExec: true}, false},
		{"suid is the LayerSet's to allow", false, []string{"suid"}, overlay.Flags{}, true},
	} {
		got, err := mountFlags(ls(tc.allow), tc.options)
		if tc.err {
			if !errors.Is(err, ErrMountOptions) {
				t.Errorf("%s: err %v, want ErrMountOptions", tc.name, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: mountFlags = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
