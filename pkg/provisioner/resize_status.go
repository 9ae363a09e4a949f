package provisioner

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The claim status a resize goes through is external-resizer's (with
// RecoverVolumeExpansionFailure, on by default since Kubernetes 1.32),
// since kubelet reads it: kubelet calls NodeExpandVolume only for a claim
// whose status.allocatedResourceStatuses[storage] is NodeResizePending
// (or NodeResizeInProgress, which it sets itself) and whose PV's
// spec.capacity exceeds its status.capacity; when it is done it sets
// status.capacity to the PV's, and drops the status and the resize
// conditions.
//
//	request grows:     allocatedResources = new size, ControllerResizeInProgress, condition Resizing
//	ControllerExpandVolume, PV spec.capacity = new size
//	node to expand:    NodeResizePending, condition FileSystemResizePending
//	nothing to expand: status.capacity = new size, status and conditions dropped
//	refused:           ControllerResizeInfeasible, condition ControllerResizeError
//	failed otherwise:  condition ControllerResizeError (retried)

// resizeConditions are the claim conditions a resize sets; the others are
// kept as they are.
var resizeConditions = map[corev1.PersistentVolumeClaimConditionType]bool{
	corev1.PersistentVolumeClaimResizing:                true,
	corev1.PersistentVolumeClaimFileSystemResizePending: true,
	corev1.PersistentVolumeClaimControllerResizeError:   true,
	corev1.PersistentVolumeClaimNodeResizeError:         true,
}

// fsResizePendingMessage is external-resizer's, which users may know.
const fsResizePendingMessage = "Waiting for user to (re-)start a pod to finish file system resize of volume on node."

// oldConditions says what setResizeConditions does with the resize
// conditions it is not given.
type oldConditions int

const (
	dropOldConditions oldConditions = iota
	keepOldConditions
)

// setResizeConditions puts conds in place of the claim's conditions of
// their types, where those stand (so that a status that does not change
// patches to nothing), appends the others, and keeps or drops the claim's
// other resize conditions.
func setResizeConditions(pvc *corev1.PersistentVolumeClaim, old oldConditions, conds ...corev1.PersistentVolumeClaimCondition) {
	given := map[corev1.PersistentVolumeClaimConditionType]int{}
	for i, c := range conds {
		given[c.Type] = i
	}
	placed := map[corev1.PersistentVolumeClaimConditionType]bool{}
	var out []corev1.PersistentVolumeClaimCondition
	for _, c := range pvc.Status.Conditions {
		i, replaced := given[c.Type]
		switch {
		case replaced && !placed[c.Type]:
			out = append(out, conds[i])
			placed[c.Type] = true
		case replaced:
		case !resizeConditions[c.Type] || old == keepOldConditions:
			out = append(out, c)
		}
	}
	for _, c := range conds {
		if !placed[c.Type] {
			out = append(out, c)
			placed[c.Type] = true
		}
	}
	pvc.Status.Conditions = out
}

// dropCondition removes the claim's conditions of type t.
func dropCondition(pvc *corev1.PersistentVolumeClaim, t corev1.PersistentVolumeClaimConditionType) {
	var out []corev1.PersistentVolumeClaimCondition
	for _, c := range pvc.Status.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	pvc.Status.Conditions = out
}

// condition returns the claim's condition of type t that is true, or nil.
func condition(pvc *corev1.PersistentVolumeClaim, t corev1.PersistentVolumeClaimConditionType) *corev1.PersistentVolumeClaimCondition {
	for i, c := range pvc.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue {
			return &pvc.Status.Conditions[i]
		}
	}
	return nil
}

func newCondition(t corev1.PersistentVolumeClaimConditionType, message string, now time.Time) corev1.PersistentVolumeClaimCondition {
	return corev1.PersistentVolumeClaimCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now), Message: message}
}

// resizeStatus is the claim's allocatedResourceStatuses[storage], "" for none.
func resizeStatus(pvc *corev1.PersistentVolumeClaim) corev1.ClaimResourceStatus {
	return pvc.Status.AllocatedResourceStatuses[corev1.ResourceStorage]
}

func setResizeStatus(pvc *corev1.PersistentVolumeClaim, s corev1.ClaimResourceStatus) {
	if pvc.Status.AllocatedResourceStatuses == nil {
		pvc.Status.AllocatedResourceStatuses = map[corev1.ResourceName]corev1.ClaimResourceStatus{}
	}
	pvc.Status.AllocatedResourceStatuses[corev1.ResourceStorage] = s
}

func clearResizeStatus(pvc *corev1.PersistentVolumeClaim) {
	delete(pvc.Status.AllocatedResourceStatuses, corev1.ResourceStorage)
	if len(pvc.Status.AllocatedResourceStatuses) == 0 {
		pvc.Status.AllocatedResourceStatuses = nil
	}
}

// allocated is the size the last resize was for, if one was.
func allocated(pvc *corev1.PersistentVolumeClaim) (resource.Quantity, bool) {
	q, ok := pvc.Status.AllocatedResources[corev1.ResourceStorage]
	return q, ok
}

// needsResize reports whether a bound claim asks for more than it has.
func needsResize(pvc *corev1.PersistentVolumeClaim) bool {
	request, capacity := pvc.Spec.Resources.Requests[corev1.ResourceStorage], pvc.Status.Capacity[corev1.ResourceStorage]
	return pvc.Status.Phase == corev1.ClaimBound && pvc.Spec.VolumeName != "" && request.Cmp(capacity) > 0
}

// resizeTarget decides the size to expand the claim's volume to now, as
// external-resizer's expandAndRecover does; ok is false when there is
// nothing to do: the volume has the size, and kubelet is to expand it on
// its node. A resize in progress is finished at the size it was for
// before a newer request is taken up, unless it failed for good.
func resizeTarget(pvc *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) (size resource.Quantity, ok bool) {
	request := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	pvSize := pv.Spec.Capacity[corev1.ResourceStorage]
	last, resized := allocated(pvc)
	size = request
	status := resizeStatus(pvc)
	if pvSize.Cmp(request) < 0 {
		switch status {
		case corev1.PersistentVolumeClaimNodeResizeInfeasible:
			if resized {
				size = last
			}
		case corev1.PersistentVolumeClaimNodeResizePending, corev1.PersistentVolumeClaimNodeResizeInProgress:
			if resized {
				size = last
			}
			if pvSize.Cmp(size) >= 0 {
				return resource.Quantity{}, false // kubelet's turn
			}
		case corev1.PersistentVolumeClaimControllerResizeInProgress:
			if resized && condition(pvc, corev1.PersistentVolumeClaimControllerResizeError) == nil {
				size = last
			}
		}
		return size, true
	}
	// The volume has what the claim asks: a resize whose status was not
	// recorded, or kubelet's to finish.
	switch status {
	case corev1.PersistentVolumeClaimNodeResizePending, corev1.PersistentVolumeClaimNodeResizeInProgress:
		return resource.Quantity{}, false
	case corev1.PersistentVolumeClaimNodeResizeInfeasible,
		corev1.PersistentVolumeClaimControllerResizeInProgress, corev1.PersistentVolumeClaimControllerResizeInfeasible:
		if resized {
			size = last
		}
	default:
		switch {
		case resized:
			size = last
		case condition(pvc, corev1.PersistentVolumeClaimFileSystemResizePending) != nil:
			return resource.Quantity{}, false
		}
	}
	return size, true
}

// markControllerResize is the claim's status as a resize to size starts.
// A retry at the size already allocated keeps the status and conditions
// the last attempt left.
func markControllerResize(pvc *corev1.PersistentVolumeClaim, size resource.Quantity, now time.Time) {
	old := dropOldConditions
	if last, resized := allocated(pvc); resized && last.Cmp(size) == 0 {
		old = keepOldConditions
	} else {
		setResizeStatus(pvc, corev1.PersistentVolumeClaimControllerResizeInProgress)
	}
	if c := condition(pvc, corev1.PersistentVolumeClaimResizing); c == nil {
		setResizeConditions(pvc, old, newCondition(corev1.PersistentVolumeClaimResizing, "", now))
	} else {
		setResizeConditions(pvc, old, *c)
	}
	if pvc.Status.AllocatedResources == nil {
		pvc.Status.AllocatedResources = corev1.ResourceList{}
	}
	pvc.Status.AllocatedResources[corev1.ResourceStorage] = size
}

// markNodeResizePending is the claim's status once its volume has grown
// and kubelet is to grow it on its node.
func markNodeResizePending(pvc *corev1.PersistentVolumeClaim, now time.Time) {
	dropCondition(pvc, corev1.PersistentVolumeClaimControllerResizeError)
	if condition(pvc, corev1.PersistentVolumeClaimFileSystemResizePending) == nil {
		setResizeConditions(pvc, keepOldConditions, newCondition(corev1.PersistentVolumeClaimFileSystemResizePending, fsResizePendingMessage, now))
	}
	setResizeStatus(pvc, corev1.PersistentVolumeClaimNodeResizePending)
}

// markResizeFinished is the claim's status once its volume has grown and
// the node has nothing to do.
func markResizeFinished(pvc *corev1.PersistentVolumeClaim, capacity resource.Quantity) {
	if pvc.Status.Capacity == nil {
		pvc.Status.Capacity = corev1.ResourceList{}
	}
	pvc.Status.Capacity[corev1.ResourceStorage] = capacity
	setResizeConditions(pvc, dropOldConditions)
	clearResizeStatus(pvc)
}

// resizeOutcome says how an expansion failed, for the claim's status.
type resizeOutcome int

const (
	// resizeRetried failed for now (busy, timed out): nothing recorded.
	resizeRetried resizeOutcome = iota
	// resizeFailed failed for good at this attempt: the condition says
	// why, and it is retried with backoff.
	resizeFailed
	// resizeInfeasible was refused (a shrink, above maxSize, no such
	// volume): retried only after InfeasibleRetry or a new request.
	resizeInfeasible
)

// markResizeFailed is the claim's status after an expansion failed.
func markResizeFailed(pvc *corev1.PersistentVolumeClaim, outcome resizeOutcome, message string, now time.Time) {
	if outcome == resizeRetried {
		return
	}
	if outcome == resizeInfeasible {
		setResizeStatus(pvc, corev1.PersistentVolumeClaimControllerResizeInfeasible)
	}
	// A new time at each failure: the retry of an infeasible size waits
	// from the last one.
	setResizeConditions(pvc, keepOldConditions, newCondition(corev1.PersistentVolumeClaimControllerResizeError, "failed to expand pvc with "+message, now))
}

// infeasibleWait is how much longer a claim whose last expansion to size
// was refused waits before trying it again; 0 to try now.
func infeasibleWait(pvc *corev1.PersistentVolumeClaim, size resource.Quantity, retry time.Duration, now time.Time) time.Duration {
	last, resized := allocated(pvc)
	if resizeStatus(pvc) != corev1.PersistentVolumeClaimControllerResizeInfeasible || !resized || last.Cmp(size) != 0 {
		return 0
	}
	c := condition(pvc, corev1.PersistentVolumeClaimControllerResizeError)
	if c == nil {
		return 0
	}
	if wait := c.LastTransitionTime.Add(retry).Sub(now); wait > 0 {
		return wait
	}
	return 0
}
