package assemble

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

func TestVolumeSize(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	for _, tc := range []struct {
		name        string
		def, max    *resource.Quantity
		asked, want int64
		errs        []string
	}{
		{name: "no size, no default", asked: 0, want: 0},
		{name: "asked, no bounds", asked: 1 << 30, want: 1 << 30},
		{name: "default when none asked", def: q("64Mi"), asked: 0, want: 64 << 20},
		{name: "asked wins over default", def: q("64Mi"), asked: 16 << 20, want: 16 << 20},
		{name: "at the maximum", max: q("1Gi"), asked: 1 << 30, want: 1 << 30},
		{name: "above the maximum", max: q("1Gi"), asked: 2 << 30, errs: []string{"asks for 2Gi", "at most 1Gi", `"tools"`, "spec.maxSize"}},
		{name: "default above the maximum", def: q("2Gi"), max: q("1Gi"), errs: []string{"asks for 2Gi", "at most 1Gi"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ls := &v1alpha1.LayerSet{}
			ls.Name = "tools"
			ls.Spec.DefaultSize, ls.Spec.MaxSize = tc.def, tc.max
			got, err := volumeSize(ls, tc.asked)
			if len(tc.errs) > 0 {
				if !errors.Is(err, ErrSize) {
					t.Fatalf("got %d, %v; want ErrSize", got, err)
				}
				for _, m := range tc.errs {
					if !strings.Contains(err.Error(), m) {
						t.Errorf("error %q does not say %q", err, m)
					}
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
