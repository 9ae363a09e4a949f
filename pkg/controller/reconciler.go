package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/source"
)

// Options configures the reconciler.
type Options struct {
	// Source configures registry access. Its Keychain is replaced, per
	// LayerSet, by the LayerSet's pull secrets and authn.DefaultKeychain.
	Source source.Options
	// MaxConcurrentReconciles bounds parallel resolutions; 0 means 4.
	MaxConcurrentReconciles int
}

// reconciler resolves LayerSets and reports their cache readiness.
type reconciler struct {
	client    client.Client // cached: LayerSets, NodeCaches, Node and Secret metadata
	apiReader client.Reader // uncached: Secret data
	events    recorder.EventRecorder
	opts      Options
	retries   retries
	now       func() time.Time
}

// actionResolve is the action of the Events the reconciler emits; their
// reasons are the Resolved condition's.
const actionResolve = "Resolve"

// Reconcile brings one LayerSet's status up to date: it resolves the chain
// when its inputs changed (or a failed attempt is due again) and sums up
// the node caches.
func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ls v1alpha1.LayerSet
	if err := r.client.Get(ctx, req.NamespacedName, &ls); err != nil {
		if apierrors.IsNotFound(err) {
			r.retries.forget(req.Name)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !ls.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	st := ls.Status.DeepCopy()
	var requeue time.Duration
	current, err := r.current(ctx, &ls)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !current {
		if requeue, err = r.resolveInto(ctx, &ls, st); err != nil {
			return ctrl.Result{}, err
		}
	}
	if st.Cache, err = r.cacheState(ctx, &ls, st); err != nil {
		return ctrl.Result{}, err
	}
	st.ObservedGeneration = ls.Generation
	setReady(st, ls.Generation)
	if !equality.Semantic.DeepEqual(st, &ls.Status) {
		ls.Status = *st
		if err := r.client.Status().Update(ctx, &ls); err != nil {
			return ctrl.Result{}, fmt.Errorf("updating status of LayerSet %q: %w", ls.Name, err)
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// resolveInto resolves ls, unless a failed attempt with the same inputs is
// not due yet, and writes the outcome to st. It returns when to look again.
func (r *reconciler) resolveInto(ctx context.Context, ls *v1alpha1.LayerSet, st *v1alpha1.LayerSetStatus) (time.Duration, error) {
	logger := log.FromContext(ctx)
	includes, err := r.includes(ctx, st.Includes)
	if err != nil {
		return 0, err
	}
	inputs, err := r.fingerprint(ctx, ls, includes, st.PullSecrets)
	if err != nil {
		return 0, err
	}
	wait := r.retries.wait(ls.Name, inputs, r.now())
	if wait != 0 && isFailedFor(st, ls.Generation) {
		return recheck(wait), nil
	}

	a := r.resolve(ctx, ls)
	st.Includes, st.PullSecrets = a.includes, a.pullSecrets
	if a.err == nil {
		r.retries.forget(ls.Name)
		chain, total := chainStatus(a.chain)
		setResolved(st, ls.Generation, chain, total)
		logger.Info("Resolved LayerSet", "layers", len(chain), "bytes", total, "chainID", st.ChainID)
		r.events.Eventf(ls, nil, corev1.EventTypeNormal, v1alpha1.ReasonResolved, actionResolve,
			"Resolved %d layers (%d bytes), chain %s", len(chain), total, st.ChainID)
		return 0, nil
	}
	if ctx.Err() != nil {
		return 0, ctx.Err() // shutting down: record nothing
	}
	reason, again := classify(a.err)
	setFailed(st, ls.Generation, reason, a.err.Error())
	// Fingerprint the LayerSets as this attempt read them, so that a change
	// to one made while it ran still counts as a change.
	if inputs, err = r.fingerprint(ctx, ls, a.includes, a.pullSecrets); err != nil {
		return 0, err
	}
	delay := r.retries.failed(ls.Name, inputs, again, r.now())
	retryIn := "after a change"
	if delay > 0 {
		retryIn = delay.String()
	}
	logger.Info("Cannot resolve LayerSet", "reason", reason, "err", a.err, "retry", retryIn)
	r.events.Eventf(ls, nil, corev1.EventTypeWarning, reason, actionResolve, "%s", truncate(a.err.Error()))
	return recheck(delay), nil
}

// recheck turns a retry delay into a requeue delay. A failure only a change
// can fix is still looked at every maxRetry: a change whose event came
// before this LayerSet's status named what it depends on (an included
// LayerSet created in between) is then seen, at the cost of cache reads.
func recheck(delay time.Duration) time.Duration {
	if delay < 0 {
		return maxRetry
	}
	return delay
}

// isFailedFor reports whether st records a failed resolution of
// generation gen, so that waiting for a retry shows a truthful status.
func isFailedFor(st *v1alpha1.LayerSetStatus, gen int64) bool {
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionResolved)
	return c != nil && c.Status == metav1.ConditionFalse && c.ObservedGeneration == gen
}

// isResolved reports whether st holds a resolved chain.
func isResolved(st *v1alpha1.LayerSetStatus) bool {
	return meta.IsStatusConditionTrue(st.Conditions, v1alpha1.ConditionResolved)
}
