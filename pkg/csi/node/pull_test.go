package node

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A first mount on a cold cache outlives kubelet's deadline: the call
// fails with DeadlineExceeded, the pull goes on, and the retry joins it.
func TestColdPullOutlivesDeadline(t *testing.T) {
	reg := newRegistry(t, true)
	e := newEnv(t, reg)
	const id = "csi-cold"
	target := filepath.Join(e.dir, "mount")

	// Called directly, not through gRPC, so that the code checked is the
	// one the node returns, not the one the client makes up when its own
	// deadline passes.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := e.node.NodePublishVolume(ctx, e.ephemeralRequest(id, target))
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("publish with the blob download stalled: %v, want DeadlineExceeded", err)
	}
	if exists(target) {
		t.Error("the failed publish left its target")
	}
	if rec, _ := e.node.state.load(id); rec != nil {
		t.Errorf("the failed publish left a record: %+v", rec)
	}

	reg.release()
	if _, err := e.client.NodePublishVolume(context.Background(), e.ephemeralRequest(id, target)); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if got := readFile(t, filepath.Join(target, "bin/tool")); !strings.Contains(got, "echo tool") {
		t.Errorf("volume holds %q", got)
	}
	if n := reg.blobGets.Load(); n != 1 {
		t.Errorf("the layer blob was downloaded %d times, want once: the retry must join the pull", n)
	}
	if _, err := e.client.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
}

// A second call for a volume whose first call is still running is
// turned away at once; other volumes are not held up.
func TestInFlightAborted(t *testing.T) {
	reg := newRegistry(t, true)
	e := newEnv(t, reg)
	const id = "csi-busy"
	target := filepath.Join(e.dir, "mount")

	first := make(chan error, 1)
	go func() {
		_, err := e.client.NodePublishVolume(context.Background(), e.ephemeralRequest(id, target))
		first <- err
	}()
	<-reg.stalled // the first call is inside the pull now

	_, err := e.client.NodePublishVolume(context.Background(), e.ephemeralRequest(id, target))
	if s, _ := status.FromError(err); s.Code() != codes.Aborted || !strings.Contains(s.Message(), id) {
		t.Errorf("second publish: %v, want Aborted naming the volume", err)
	}
	_, err = e.client.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	if status.Code(err) != codes.Aborted {
		t.Errorf("unpublish during publish: %v, want Aborted", err)
	}
	// Another volume goes ahead meanwhile.
	other := filepath.Join(e.dir, "other")
	if _, err := e.client.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: "csi-other", TargetPath: other}); err != nil {
		t.Errorf("a call for another volume: %v", err)
	}

	reg.release()
	if err := <-first; err != nil {
		t.Fatalf("first publish: %v", err)
	}
	if _, err := e.client.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		t.Fatal(err)
	}
}
