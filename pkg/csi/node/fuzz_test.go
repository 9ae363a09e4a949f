package node

import (
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/overlay"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// The fuzz targets here exercise the pure handling of what the caller of
// the CSI socket sends; none needs root or a store.

// FuzzVolumeContext fills a volume context with fuzzed values, for the keys
// kubelet sets and one fuzzed key, and checks that podInfo takes exactly
// the pod keys (never the node name or volume id, which the plugin fills
// in itself) and that only "true" asks for an inline ephemeral volume.
func FuzzVolumeContext(f *testing.F) {
	f.Add("web-0", "default", "0b1c-2d3e", "builder", "true", "layerSet", "python-ml")
	f.Add("", "", "", "", "", "", "")
	f.Add("a", "b", "c", "d", "True", names.ContextPodName, "override")
	f.Add("{{.NodeName}}", "../kube-system", "\x00", "x\ny", " true", "csi.storage.k8s.io/node.name", "n")
	f.Add("p", "ns", "uid", "sa", "true\x00", names.ContextEphemeral, "false")
	f.Fuzz(func(t *testing.T, pod, ns, uid, sa, ephemeral, extraKey, extraValue string) {
		vc := map[string]string{
			names.ContextPodName:        pod,
			names.ContextPodNamespace:   ns,
			names.ContextPodUID:         uid,
			names.ContextServiceAccount: sa,
			names.ContextEphemeral:      ephemeral,
		}
		vc[extraKey] = extraValue // may replace one of the above

		got := podInfo(vc)
		if got.PodName != vc[names.ContextPodName] || got.PodNamespace != vc[names.ContextPodNamespace] ||
			got.PodUID != vc[names.ContextPodUID] || got.ServiceAccount != vc[names.ContextServiceAccount] {
			t.Fatalf("podInfo(%q) = %+v: not the context's pod keys", vc, got)
		}
		if got.NodeName != "" || got.VolumeID != "" {
			t.Fatalf("podInfo(%q) = %+v: the node name and volume id must not come from the volume context", vc, got)
		}
		if want := vc[names.ContextEphemeral] == "true"; isEphemeral(vc) != want {
			t.Fatalf("isEphemeral(%q) = %t, want %t", vc[names.ContextEphemeral], !want, want)
		}
		if isEphemeral(nil) || podInfo(nil) != podInfo(map[string]string{}) {
			t.Fatal("a nil volume context is not an empty one")
		}
	})
}

// FuzzMountOptions feeds comma-separated mount flags (a PV's or a
// StorageClass's mountOptions, as kubelet passes them) to checkMountFlags and
// checks that what it accepts never loosens the default nosuid,nodev,
// that "suid" and "dev" are always refused, that refusals are
// InvalidArgument, and that accepted flags are passed on unchanged.
func FuzzMountOptions(f *testing.F) {
	for _, s := range []string{
		"", "ro", "rw,noatime", "nosuid,nodev,noexec", "suid", "dev", "ro,suid", " dev ", "exec,relatime,nodiratime",
		"strictatime", "bogus", "nosuid=0", "SUID", "ro,,rw", "context=system_u:object_r:container_file_t:s0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, flags string) {
		var opts []string
		if flags != "" {
			opts = strings.Split(flags, ",")
		}
		c := &csi.VolumeCapability{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: opts}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
		}
		err := checkMountFlags(c)
		got := c.GetMount().GetMountFlags()
		loosening := false
		for _, o := range opts {
			if s := strings.TrimSpace(o); s == "suid" || s == "dev" {
				loosening = true
			}
		}
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("checkMountFlags(%q) = %v, want InvalidArgument", opts, err)
			}
			return
		}
		if loosening {
			t.Fatalf("checkMountFlags(%q) accepted suid or dev", opts)
		}
		if strings.Join(got, ",") != strings.Join(opts, ",") || len(got) != len(opts) {
			t.Fatalf("checkMountFlags(%q) = %q: accepted flags are passed on as given", opts, got)
		}
		fl, err := overlay.ParseFlags(overlay.DefaultFlags, got)
		if err != nil {
			t.Fatalf("checkMountFlags accepted %q, which ParseFlags refuses: %v", got, err)
		}
		if !fl.NoSuid || !fl.NoDev {
			t.Fatalf("checkMountFlags accepted %q, which gives %+v: nosuid,nodev lost", got, fl)
		}
	})
}

// FuzzAskedSize feeds volumeAttributes.size (and the deprecated key) what
// a pod's author may write: a size is either refused with InvalidArgument
// naming the key, or taken within the bounds the store accepts.
func FuzzAskedSize(f *testing.F) {
	for _, s := range []string{"16Mi", "1Gi", "0", "-1", "1e3", "1.5Gi", "9223372036854775807", "1E", "1Pi", "2Pi", "10gi", "", " 1Gi", "1Mi\x00"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, deprecatedKey bool) {
		key := names.ContextSize
		if deprecatedKey {
			key = names.ContextUpperSizeHint
		}
		bytes, deprecated, err := askedSize(map[string]string{key: s})
		if deprecated != deprecatedKey {
			t.Fatalf("deprecated = %t for key %s", deprecated, key)
		}
		if err != nil {
			if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), key) {
				t.Fatalf("size %q: %v, want InvalidArgument naming %s", s, err, key)
			}
			return
		}
		if bytes < quota.MinLimit || bytes > quota.MaxLimit {
			t.Fatalf("size %q taken as %d bytes, outside [%d, %d]", s, bytes, int64(quota.MinLimit), int64(quota.MaxLimit))
		}
	})
}
