package provisioner

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// resizeClaim is a bound claim asking for request, with status capacity
// capacity, the resize status st and the allocated size alloc ("" for none).
func resizeClaim(request, capacity string, st corev1.ClaimResourceStatus, alloc string, conds ...corev1.PersistentVolumeClaimConditionType) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		Spec: corev1.PersistentVolumeClaimSpec{
			VolumeName: "pvc-1",
			Resources:  corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(request)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound, Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}},
	}
	if st != "" {
		setResizeStatus(c, st)
	}
	if alloc != "" {
		c.Status.AllocatedResources = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(alloc)}
	}
	for _, t := range conds {
		c.Status.Conditions = append(c.Status.Conditions, corev1.PersistentVolumeClaimCondition{Type: t, Status: corev1.ConditionTrue})
	}
	return c
}

func resizePV(capacity string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}}}
}

func TestResizeTarget(t *testing.T) {
	const (
		ctrlProgress   = corev1.PersistentVolumeClaimControllerResizeInProgress
		ctrlInfeasible = corev1.PersistentVolumeClaimControllerResizeInfeasible
		nodePending    = corev1.PersistentVolumeClaimNodeResizePending
		nodeProgress   = corev1.PersistentVolumeClaimNodeResizeInProgress
		nodeInfeasible = corev1.PersistentVolumeClaimNodeResizeInfeasible
		ctrlError      = corev1.PersistentVolumeClaimControllerResizeError
		fsPending      = corev1.PersistentVolumeClaimFileSystemResizePending
	)
	tests := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		pv    string
		want  string // "" for nothing to do
	}{
		{name: "a new request", claim: resizeClaim("128Mi", "64Mi", "", ""), pv: "64Mi", want: "128Mi"},
		{name: "refused before: the request", claim: resizeClaim("128Mi", "64Mi", ctrlInfeasible, "256Mi", ctrlError), pv: "64Mi", want: "128Mi"},
		{name: "in progress: its size first", claim: resizeClaim("256Mi", "64Mi", ctrlProgress, "128Mi"), pv: "64Mi", want: "128Mi"},
		{name: "in progress, failed for good: the request", claim: resizeClaim("256Mi", "64Mi", ctrlProgress, "128Mi", ctrlError), pv: "64Mi", want: "256Mi"},
		{name: "node pending, volume grown: kubelet's turn", claim: resizeClaim("128Mi", "64Mi", nodePending, "128Mi", fsPending), pv: "128Mi"},
		{name: "node in progress: kubelet's turn", claim: resizeClaim("128Mi", "64Mi", nodeProgress, "128Mi"), pv: "128Mi"},
		{name: "node pending, request grew again: kubelet first", claim: resizeClaim("256Mi", "64Mi", nodePending, "128Mi"), pv: "128Mi"},
		{name: "node pending, volume not grown: grow it", claim: resizeClaim("256Mi", "64Mi", nodePending, "128Mi"), pv: "64Mi", want: "128Mi"},
		{name: "node refused, smaller volume: the allocated size", claim: resizeClaim("256Mi", "64Mi", nodeInfeasible, "128Mi"), pv: "64Mi", want: "128Mi"},
		{name: "volume grown, status lost: record it", claim: resizeClaim("128Mi", "64Mi", ctrlProgress, "128Mi"), pv: "128Mi", want: "128Mi"},
		{name: "volume grown, refusal recorded: the allocated size", claim: resizeClaim("128Mi", "64Mi", ctrlInfeasible, "128Mi"), pv: "128Mi", want: "128Mi"},
		{name: "node refused, volume grown: again for the node", claim: resizeClaim("128Mi", "64Mi", nodeInfeasible, "128Mi"), pv: "128Mi", want: "128Mi"},
		{name: "volume grown, only a condition (old resizer)", claim: resizeClaim("128Mi", "64Mi", "", "", fsPending), pv: "128Mi"},
		{name: "volume grown, nothing recorded", claim: resizeClaim("128Mi", "64Mi", "", ""), pv: "128Mi", want: "128Mi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := resizeTarget(tt.claim, resizePV(tt.pv))
			switch {
			case tt.want == "" && ok:
				t.Errorf("resize to %s, want nothing to do", got.String())
			case tt.want != "" && (!ok || got.Cmp(resource.MustParse(tt.want)) != 0):
				t.Errorf("resize to %s (%t), want %s", got.String(), ok, tt.want)
			}
		})
	}
}

func TestNeedsResize(t *testing.T) {
	unbound := resizeClaim("128Mi", "64Mi", "", "")
	unbound.Status.Phase = corev1.ClaimPending
	tests := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		want  bool
	}{
		{"grown request", resizeClaim("128Mi", "64Mi", "", ""), true},
		{"same", resizeClaim("64Mi", "64Mi", "", ""), false},
		// A claim bound to a larger PV has a capacity above its request.
		{"request below capacity", resizeClaim("1Gi", "10Gi", "", ""), false},
		{"not bound", unbound, false},
	}
	for _, tt := range tests {
		if got := needsResize(tt.claim); got != tt.want {
			t.Errorf("%s: needsResize = %t, want %t", tt.name, got, tt.want)
		}
	}
}

// The claim's status through a resize, as kubelet and users read it.
func TestResizeStatusMarks(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	other := corev1.PersistentVolumeClaimCondition{Type: corev1.PersistentVolumeClaimConditionType("Example"), Status: corev1.ConditionTrue}
	pvc := resizeClaim("128Mi", "64Mi", "", "")
	pvc.Status.Conditions = []corev1.PersistentVolumeClaimCondition{other}

	markControllerResize(pvc, resource.MustParse("128Mi"), now)
	wantStatus(t, "controller resize", pvc, corev1.PersistentVolumeClaimControllerResizeInProgress, "128Mi", "Example", "Resizing")

	markResizeFailed(pvc, resizeInfeasible, "volume cannot shrink", now)
	wantStatus(t, "refused", pvc, corev1.PersistentVolumeClaimControllerResizeInfeasible, "128Mi", "Example", "Resizing", "ControllerResizeError")
	if c := condition(pvc, corev1.PersistentVolumeClaimControllerResizeError); c.Message != "failed to expand pvc with volume cannot shrink" {
		t.Errorf("error condition message %q", c.Message)
	}
	if w := infeasibleWait(pvc, resource.MustParse("128Mi"), time.Minute, now.Add(20*time.Second)); w != 40*time.Second {
		t.Errorf("infeasible wait %s, want 40s", w)
	}
	if w := infeasibleWait(pvc, resource.MustParse("128Mi"), time.Minute, now.Add(2*time.Minute)); w != 0 {
		t.Errorf("infeasible wait after the retry time %s, want 0", w)
	}
	if w := infeasibleWait(pvc, resource.MustParse("100Mi"), time.Minute, now); w != 0 {
		t.Errorf("infeasible wait for another size %s, want 0", w)
	}

	// Tried again at the same size: what the refusal left stays until
	// the outcome is known.
	markControllerResize(pvc, resource.MustParse("128Mi"), now)
	wantStatus(t, "retried", pvc, corev1.PersistentVolumeClaimControllerResizeInfeasible, "128Mi", "Example", "Resizing", "ControllerResizeError")

	markNodeResizePending(pvc, now)
	wantStatus(t, "node pending", pvc, corev1.PersistentVolumeClaimNodeResizePending, "128Mi", "Example", "Resizing", "FileSystemResizePending")

	markResizeFinished(pvc, resource.MustParse("128Mi"))
	wantStatus(t, "finished", pvc, "", "128Mi", "Example")
	if c := pvc.Status.Capacity[corev1.ResourceStorage]; c.Cmp(resource.MustParse("128Mi")) != 0 || pvc.Status.AllocatedResourceStatuses != nil {
		t.Errorf("finished: capacity %s, statuses %v", c.String(), pvc.Status.AllocatedResourceStatuses)
	}

	// A new size starts afresh: old resize conditions go.
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("256Mi")
	markResizeFailed(pvc, resizeFailed, "internal", now)
	wantStatus(t, "failed", pvc, "", "128Mi", "Example", "ControllerResizeError")
	markControllerResize(pvc, resource.MustParse("256Mi"), now)
	wantStatus(t, "new size", pvc, corev1.PersistentVolumeClaimControllerResizeInProgress, "256Mi", "Example", "Resizing")
}

func wantStatus(t *testing.T, step string, pvc *corev1.PersistentVolumeClaim, st corev1.ClaimResourceStatus, alloc string, conds ...string) {
	t.Helper()
	if got := resizeStatus(pvc); got != st {
		t.Errorf("%s: resize status %q, want %q", step, got, st)
	}
	if got := pvc.Status.AllocatedResources[corev1.ResourceStorage]; got.Cmp(resource.MustParse(alloc)) != 0 {
		t.Errorf("%s: allocated %s, want %s", step, got.String(), alloc)
	}
	var got []string
	for _, c := range pvc.Status.Conditions {
		got = append(got, string(c.Type))
	}
	if len(got) != len(conds) {
		t.Errorf("%s: conditions %q, want %q", step, got, conds)
		return
	}
	for i := range got {
		if got[i] != conds[i] {
			t.Errorf("%s: conditions %q, want %q", step, got, conds)
			return
		}
	}
}

func TestClassifyResizeError(t *testing.T) {
	tests := []struct {
		err  error
		want resizeOutcome
	}{
		{status.Error(codes.OutOfRange, "cannot shrink"), resizeInfeasible},
		{status.Error(codes.InvalidArgument, "bad"), resizeInfeasible},
		{status.Error(codes.NotFound, "no volume"), resizeInfeasible},
		{status.Error(codes.Aborted, "busy"), resizeRetried},
		{status.Error(codes.DeadlineExceeded, "slow"), resizeRetried},
		{status.Error(codes.Unavailable, "down"), resizeRetried},
		{status.Error(codes.Internal, "disk"), resizeFailed},
		{status.Error(codes.FailedPrecondition, "not ready"), resizeFailed},
		{errors.New("not a status"), resizeRetried},
	}
	for _, tt := range tests {
		if got := classifyResizeError(tt.err); got != tt.want {
			t.Errorf("%v: outcome %d, want %d", tt.err, got, tt.want)
		}
	}
}
