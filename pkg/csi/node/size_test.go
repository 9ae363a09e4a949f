package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/secondkernel"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/quota"
)

const mib = 1 << 20

// eventLog keeps the events the node records. It stands in for the API
// server's events endpoint, which these node tests have no server for;
// what an event says is the node's doing, not the server's.
type eventLog struct {
	mu     sync.Mutex
	events []string // "KIND/NAME REASON: NOTE"
}

func (l *eventLog) Eventf(regarding, _ runtime.Object, _, reason, _, note string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kind := fmt.Sprintf("%T", regarding)
	name := ""
	if o, ok := regarding.(client.Object); ok {
		name = o.GetName()
		if ns := o.GetNamespace(); ns != "" {
			name = ns + "/" + name
		}
	}
	l.events = append(l.events, fmt.Sprintf("%s/%s %s: %s", kind[strings.LastIndex(kind, ".")+1:], name, reason, fmt.Sprintf(note, args...)))
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

func bytesUsage(t *testing.T, e *env, id, path string) *csi.VolumeUsage {
	t.Helper()
	stats, err := e.client.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: path})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range stats.Usage {
		if u.Unit == csi.VolumeUsage_BYTES {
			return u
		}
	}
	t.Fatalf("no bytes in %v", stats)
	return nil
}

// TestSizedInlineVolume: an inline volume of size 16Mi stops its pod's
// writes there and reports the limit as its capacity.
func TestSizedInlineVolume(t *testing.T) {
	e := newEnvQuota(t, nil, quota.ModeFallback)
	ctx := context.Background()
	target := filepath.Join(e.dir, "inline")
	req := e.ephemeralRequest("csi-sized", target)
	req.VolumeContext[names.ContextSize] = "16Mi"
	if _, err := e.client.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	n, stderr := secondkernel.FillAsPod(t, filepath.Join(target, "fill"), 32)
	if !strings.Contains(stderr, "No space left on device") || n > 16*mib || n < 15*mib {
		t.Errorf("a 32 MiB write into a 16Mi volume stopped at %d bytes: %q", n, stderr)
	}
	u := bytesUsage(t, e, "csi-sized", target)
	if u.Total != 16*mib || u.Used < n || u.Used+u.Available != u.Total {
		t.Errorf("stats of the full volume: %+v, want total 16Mi, used ≥ %d", u, n)
	}
	if got := e.events.all(); len(got) != 0 {
		t.Errorf("events for an enforced size: %q", got)
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-sized", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, e.root, e.dir); len(m) != 0 {
		t.Errorf("left mounted after unpublish: %v", m)
	}
}

// TestSizedPersistentVolume: staged with a size, expanded live through the
// publish path, kept with its limit and data across unstage and stage.
func TestSizedPersistentVolume(t *testing.T) {
	e := newEnvQuota(t, nil, quota.ModeFallback)
	ctx := context.Background()
	const id = "pv-sized"
	staging, target := filepath.Join(e.dir, "staging"), filepath.Join(e.dir, "pod")
	stage := e.stageRequest(id, staging)
	stage.VolumeContext[names.ContextSize] = "8Mi"
	if _, err := e.client.NodeStageVolume(ctx, stage); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodePublishVolume(ctx, e.publishRequest(id, staging, target, false)); err != nil {
		t.Fatal(err)
	}
	if n, stderr := secondkernel.FillAsPod(t, filepath.Join(target, "a"), 16); n > 8*mib || stderr == "" {
		t.Fatalf("8Mi volume took %d bytes (%q)", n, stderr)
	}
	resp, err := e.client.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target,
		StagingTargetPath: staging, CapacityRange: &csi.CapacityRange{RequiredBytes: 24 * mib}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.CapacityBytes != 24*mib {
		t.Errorf("expanded capacity %d, want 24Mi", resp.CapacityBytes)
	}
	// Idempotent: the same request again changes nothing.
	if _, err := e.client.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 24 * mib}}); err != nil {
		t.Errorf("second expand: %v", err)
	}
	if n, stderr := secondkernel.FillAsPod(t, filepath.Join(target, "b"), 12); n != 12*mib {
		t.Errorf("after expanding to 24Mi, a 12 MiB write stopped at %d: %s", n, stderr)
	}
	_, err = e.client.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: id, VolumePath: target,
		CapacityRange: &csi.CapacityRange{RequiredBytes: 8 * mib}})
	if s, _ := status.FromError(err); s.Code() != codes.OutOfRange || !strings.Contains(s.Message(), "cannot shrink") {
		t.Errorf("shrink: %v, want OutOfRange saying it cannot shrink", err)
	}
	if u := bytesUsage(t, e, id, staging); u.Total != 24*mib {
		t.Errorf("capacity after expansion: %+v", u)
	}

	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, e.root, e.dir); len(m) != 0 {
		t.Errorf("left mounted after unstage (the image too?): %v", m)
	}
	// Staged again with the size its PV was created with: the raised
	// limit and the data are kept.
	if _, err := e.client.NodeStageVolume(ctx, stage); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(staging, "b")); err != nil || fi.Size() != 12*mib {
		t.Errorf("after restaging: %v %v", fi, err)
	}
	if u := bytesUsage(t, e, id, staging); u.Total != 24*mib {
		t.Errorf("capacity after restaging: %+v, want the raised 24Mi", u)
	}
	if _, err := e.client.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
		t.Fatal(err)
	}
}

// TestSizeEvents: a size the node does not enforce, and the deprecated
// attribute, are told to the pod.
func TestSizeEvents(t *testing.T) {
	e := newEnvQuota(t, nil, quota.ModeOff)
	ctx := context.Background()
	target := filepath.Join(e.dir, "inline")
	req := e.ephemeralRequest("csi-hint", target)
	req.VolumeContext[names.ContextUpperSizeHint] = "16Mi"
	if _, err := e.client.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(e.events.all(), "\n")
	for _, want := range []string{
		"Pod/shop/web-0 DeprecatedAttribute: volume csi-hint: volume attribute upperSizeHint is deprecated",
		"Pod/shop/web-0 SizeNotEnforced: volume csi-hint asked for 16Mi, which is not enforced: this node ignores volume sizes (--quota=off)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("events:\n%s\nwant a line starting %q", got, want)
		}
	}
	// Unsized, the volume's stats are the walk of its upper against the disk.
	if u := bytesUsage(t, e, "csi-hint", target); u.Total <= 16*mib {
		t.Errorf("stats of an unenforced volume: %+v, want the disk's size", u)
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-hint", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
}

// TestProjectQuotaRefused: --quota=project on a node without project
// quotas refuses sized volumes, saying what is missing, and serves
// unsized ones.
func TestProjectQuotaRefused(t *testing.T) {
	e := newEnvQuota(t, nil, quota.ModeProject)
	ctx := context.Background()
	target := filepath.Join(e.dir, "inline")
	req := e.ephemeralRequest("csi-refused", target)
	req.VolumeContext[names.ContextSize] = "16Mi"
	_, err := e.client.NodePublishVolume(ctx, req)
	if s, _ := status.FromError(err); s.Code() != codes.FailedPrecondition || !strings.Contains(s.Message(), "--quota=project") ||
		!strings.Contains(s.Message(), "ext4") {
		t.Fatalf("sized volume under --quota=project without quotas: %v, want FailedPrecondition naming the flag and filesystem", err)
	}
	if exists(target) {
		t.Error("refused publish left its target")
	}
	delete(req.VolumeContext, names.ContextSize)
	if _, err := e.client.NodePublishVolume(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-refused", TargetPath: target}); err != nil {
		t.Fatal(err)
	}
}

func TestExpandTo(t *testing.T) {
	for _, tc := range []struct {
		name string
		cr   *csi.CapacityRange
		want int64
		code codes.Code
		msg  string
	}{
		{"required", &csi.CapacityRange{RequiredBytes: 64 * mib}, 64 * mib, codes.OK, ""},
		{"limit only", &csi.CapacityRange{LimitBytes: 64 * mib}, 64 * mib, codes.OK, ""},
		{"both", &csi.CapacityRange{RequiredBytes: 64 * mib, LimitBytes: 128 * mib}, 64 * mib, codes.OK, ""},
		{"none", nil, 0, codes.InvalidArgument, "required_bytes"},
		{"negative", &csi.CapacityRange{RequiredBytes: -1}, 0, codes.InvalidArgument, "positive"},
		{"limit below required", &csi.CapacityRange{RequiredBytes: 2 << 30, LimitBytes: 1 << 30}, 0, codes.InvalidArgument, "limit_bytes"},
		{"too small", &csi.CapacityRange{RequiredBytes: 4096}, 0, codes.OutOfRange, "1Mi"},
		{"too large", &csi.CapacityRange{RequiredBytes: 1 << 60}, 0, codes.OutOfRange, "1Pi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := expandTo(tc.cr)
			if s, _ := status.FromError(err); s.Code() != tc.code || !strings.Contains(s.Message(), tc.msg) || got != tc.want {
				t.Errorf("got %d, %v; want %d, %v mentioning %q", got, err, tc.want, tc.code, tc.msg)
			}
		})
	}
}
