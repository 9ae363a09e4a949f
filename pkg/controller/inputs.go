package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// current reports whether ls's status holds a chain resolved from what ls
// and the LayerSets it includes say now.
func (r *reconciler) current(ctx context.Context, ls *v1alpha1.LayerSet) (bool, error) {
	resolved := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved)
	if resolved == nil || resolved.Status != metav1.ConditionTrue ||
		ls.Status.ObservedGeneration != ls.Generation || resolved.ObservedGeneration != ls.Generation {
		return false, nil
	}
	now, err := r.includes(ctx, ls.Status.Includes)
	if err != nil {
		return false, err
	}
	return slices.Equal(now, ls.Status.Includes), nil
}

// includes returns the LayerSets of list as the cache holds them now.
func (r *reconciler) includes(ctx context.Context, list []v1alpha1.IncludedLayerSet) ([]v1alpha1.IncludedLayerSet, error) {
	out := make([]v1alpha1.IncludedLayerSet, len(list))
	for i, inc := range list {
		out[i].Name = inc.Name
		var full v1alpha1.LayerSet
		err := r.client.Get(ctx, client.ObjectKey{Name: inc.Name}, &full)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading LayerSet %q: %w", inc.Name, err)
		default:
			out[i].UID, out[i].Generation = full.UID, full.Generation
		}
	}
	return out, nil
}

// fingerprint identifies the inputs of a failed resolution besides the
// registry: the LayerSet's spec, those of the LayerSets it looked up, and
// the versions of the pull secrets. When it changes, the failure may be
// fixed and the next attempt is due at once.
func (r *reconciler) fingerprint(ctx context.Context, ls *v1alpha1.LayerSet, includes []v1alpha1.IncludedLayerSet,
	secrets []v1alpha1.SecretReference) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s %d\n", ls.UID, ls.Generation)
	for _, inc := range includes {
		fmt.Fprintf(h, "ls %s %s %d\n", inc.Name, inc.UID, inc.Generation)
	}
	for _, ref := range appendSecrets(slices.Clone(ls.Spec.PullSecrets), secrets) {
		// Metadata only: the cache holds no Secret data.
		var s metav1.PartialObjectMetadata
		s.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := r.client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &s)
		if err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("reading pull secret %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		fmt.Fprintf(h, "secret %s/%s %s %s\n", ref.Namespace, ref.Name, s.UID, s.ResourceVersion)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// retries remembers, per LayerSet, when a failed resolution may be tried
// again. It lives in memory: a new leader tries every failed LayerSet once
// at start.
type retries struct {
	mu sync.Mutex
	m  map[string]retry
}

type retry struct {
	inputs string
	delay  time.Duration
	next   time.Time
	again  bool // the failure may go away by itself
}

// wait returns how long to wait before resolving name, whose inputs are
// now inputs; 0 means now. A failure that only a change can fix waits
// forever (-1).
func (rs *retries) wait(name, inputs string, now time.Time) time.Duration {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r, ok := rs.m[name]
	switch {
	case !ok || r.inputs != inputs:
		return 0
	case !r.again:
		return -1
	case now.Before(r.next):
		return r.next.Sub(now)
	}
	return 0
}

// failed records a failed attempt and returns the delay before the next,
// or -1 if only a change of inputs can fix it.
func (rs *retries) failed(name, inputs string, again bool, now time.Time) time.Duration {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]retry{}
	}
	var prev time.Duration
	if r, ok := rs.m[name]; ok && r.inputs == inputs {
		prev = r.delay
	}
	d := nextDelay(prev)
	rs.m[name] = retry{inputs: inputs, delay: d, next: now.Add(d), again: again}
	if !again {
		return -1
	}
	return d
}

func (rs *retries) forget(name string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.m, name)
}
