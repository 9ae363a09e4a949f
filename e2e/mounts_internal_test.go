//go:build e2e

package e2e

import (
	"reflect"
	"testing"
)

func TestParseMountInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want mountEntry
	}{{
		name: "overlay with options",
		line: `812 30 0:93 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/layers/mount rw,relatime shared:400 - overlay overlay rw,lowerdir=/s/l/A:/s/l/B,upperdir=/s/vol-1/diff,workdir=/s/vol-1/work`,
		want: mountEntry{Target: "/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/layers/mount", FSType: "overlay", Source: "overlay",
			Super: map[string]string{"rw": "", "lowerdir": "/s/l/A:/s/l/B", "upperdir": "/s/vol-1/diff", "workdir": "/s/vol-1/work"}},
	}, {
		name: "read-only bind, no optional fields, escaped space",
		line: `90 29 8:1 /data /mnt/with\040space ro,nosuid - ext4 /dev/sda1 rw`,
		want: mountEntry{Target: "/mnt/with space", FSType: "ext4", Source: "/dev/sda1", ReadOnly: true, Super: map[string]string{"rw": ""}},
	}, {
		name: "no super options",
		line: `91 29 0:5 / /dev rw - devtmpfs devtmpfs`,
		want: mountEntry{Target: "/dev", FSType: "devtmpfs", Source: "devtmpfs", Super: map[string]string{}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMountInfo(tc.line)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Errorf("parseMountInfo(%q) = %+v, want %+v", tc.line, got, tc.want)
			}
		})
	}
	for _, bad := range []string{"1 2 3", "1 2 0:1 / /x rw shared:1 overlay overlay rw"} {
		if _, err := parseMountInfo(bad); err == nil {
			t.Errorf("parseMountInfo(%q) succeeded, want an error", bad)
		}
	}
}
