package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// Retry delays after a failed resolution: doubled at each failure with the
// same inputs, from minRetry up to maxRetry.
const (
	minRetry = 5 * time.Second
	maxRetry = 5 * time.Minute
)

// maxMessage bounds a condition message; registry errors can quote whole
// response bodies.
const maxMessage = 2048

// chainStatus turns a resolved chain into status.chain and its total
// compressed size.
func chainStatus(chain []compose.Layer) ([]v1alpha1.ResolvedLayer, int64) {
	out := make([]v1alpha1.ResolvedLayer, len(chain))
	var total int64
	for i, l := range chain {
		out[i] = v1alpha1.ResolvedLayer{
			Digest:    l.Digest.String(),
			DiffID:    l.DiffID.String(),
			MediaType: string(l.MediaType),
			Size:      l.Size,
			Source:    l.Source,
			Entry:     int32(l.Entry),
		}
		total += l.Size
	}
	return out, total
}

// chainID is the OCI image spec's ChainID of the chain's diffIDs, bottom
// first: the first diffID, then sha256(previous + " " + diffID) for each
// next one. It is empty for an empty chain.
func chainID(chain []v1alpha1.ResolvedLayer) string {
	var id string
	for i, l := range chain {
		if i == 0 {
			id = l.DiffID
			continue
		}
		sum := sha256.Sum256([]byte(id + " " + l.DiffID))
		id = "sha256:" + hex.EncodeToString(sum[:])
	}
	return id
}

// classify maps a resolution error to the condition reason a person acts
// on, and tells whether trying again later may succeed without anything in
// the cluster changing. Spec problems are not retried: the watch on
// LayerSets brings the LayerSet back when they are fixed.
func classify(err error) (reason string, retry bool) {
	switch {
	case errors.Is(err, compose.ErrCycle):
		return v1alpha1.ReasonCycle, false
	case errors.Is(err, compose.ErrTooManyLayers):
		return v1alpha1.ReasonTooManyLayers, false
	case errors.Is(err, compose.ErrLayerSetNotFound):
		return v1alpha1.ReasonLayerSetNotFound, false
	case errors.Is(err, compose.ErrInvalidSpec), errors.Is(err, source.ErrInvalidReference):
		return v1alpha1.ReasonInvalidSpec, false
	case errors.Is(err, catalog.ErrPullSecretInvalid):
		// Also a Secret the controller may not read: RBAC is not watched.
		return v1alpha1.ReasonPullSecretInvalid, true
	case errors.Is(err, source.ErrNotFound):
		return v1alpha1.ReasonImageNotFound, true
	case errors.Is(err, source.ErrUnauthorized):
		return v1alpha1.ReasonUnauthorized, true
	case errors.Is(err, source.ErrUnsupported):
		return v1alpha1.ReasonImageUnsupported, true
	}
	return v1alpha1.ReasonRegistryError, true
}

// nextDelay is the wait before the next attempt after a failure that
// followed one with delay prev (0 if none).
func nextDelay(prev time.Duration) time.Duration {
	return min(max(2*prev, minRetry), maxRetry)
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage-3] + "..."
}

// setResolved records a successful resolution in st.
func setResolved(st *v1alpha1.LayerSetStatus, gen int64, chain []v1alpha1.ResolvedLayer, total int64) {
	st.Chain = chain
	st.LayerCount = int32(len(chain))
	st.TotalSize = total
	st.ChainID = chainID(chain)
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type:               v1alpha1.ConditionResolved,
		Status:             metav1.ConditionTrue,
		ObservedGeneration: gen,
		Reason:             v1alpha1.ReasonResolved,
		Message:            fmt.Sprintf("%d layers, %d bytes, pinned by digest", len(chain), total),
	})
}

// setFailed records a failed resolution in st. The chain of an earlier
// spec is dropped: nodes must not mount it as if it were this one's.
func setFailed(st *v1alpha1.LayerSetStatus, gen int64, reason, message string) {
	st.Chain, st.LayerCount, st.TotalSize, st.ChainID = nil, 0, 0, ""
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type:               v1alpha1.ConditionResolved,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: gen,
		Reason:             reason,
		Message:            truncate(message),
	})
}

// setReady derives the Ready condition from Resolved and the cache state.
// Ready does not wait for nodes: a node pulls what it lacks at mount time.
func setReady(st *v1alpha1.LayerSetStatus, gen int64) {
	st.ReadyNodes = fmt.Sprintf("%d/%d", st.Cache.Ready, st.Cache.Wanted)
	resolved := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionResolved)
	ready := metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             metav1.ConditionFalse,
		ObservedGeneration: gen,
	}
	switch {
	case resolved == nil:
		ready.Reason, ready.Message = "Resolving", "the chain has not been resolved yet"
	case resolved.Status != metav1.ConditionTrue:
		ready.Reason, ready.Message = resolved.Reason, resolved.Message
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, v1alpha1.ReasonReady
		ready.Message = fmt.Sprintf("%d layers can be mounted; %d of %d nodes hold all of them",
			st.LayerCount, st.Cache.Ready, st.Cache.Wanted)
	}
	meta.SetStatusCondition(&st.Conditions, ready)
}
