package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/catalog"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// attempt is the outcome of one resolution of a LayerSet.
type attempt struct {
	chain []compose.Layer
	// includes are the LayerSets looked up, with the versions used; one
	// that was not found has an empty UID.
	includes []v1alpha1.IncludedLayerSet
	// pullSecrets are the LayerSet's own and those of what it includes.
	pullSecrets []v1alpha1.SecretReference
	err         error
}

// resolve expands ls into its chain with compose.Resolve. LayerSets come
// from the cache; images are resolved with the pull secrets of ls and of
// every LayerSet it includes, as found so far, so an included LayerSet's
// private images resolve with its own secrets.
func (r *reconciler) resolve(ctx context.Context, ls *v1alpha1.LayerSet) attempt {
	a := attempt{pullSecrets: appendSecrets(nil, ls.Spec.PullSecrets)}
	if ls.Spec.Prefetch != nil {
		if _, err := metav1.LabelSelectorAsSelector(ls.Spec.Prefetch); err != nil {
			a.err = fmt.Errorf("%w: spec.prefetch: %w", compose.ErrInvalidSpec, err)
			return a
		}
	}
	lookup := func(ctx context.Context, name string) (*v1alpha1.LayerSet, error) {
		var nested v1alpha1.LayerSet
		err := r.client.Get(ctx, client.ObjectKey{Name: name}, &nested)
		switch {
		case apierrors.IsNotFound(err):
			a.includes = appendInclude(a.includes, v1alpha1.IncludedLayerSet{Name: name})
			return nil, fmt.Errorf("%w: %q", compose.ErrLayerSetNotFound, name)
		case err != nil:
			return nil, fmt.Errorf("reading LayerSet %q: %w", name, err)
		}
		a.includes = appendInclude(a.includes, v1alpha1.IncludedLayerSet{
			Name: name, UID: nested.UID, Generation: nested.Generation,
		})
		a.pullSecrets = appendSecrets(a.pullSecrets, nested.Spec.PullSecrets)
		return &nested, nil
	}
	var (
		keychain    authn.Keychain
		keychainFor int // len(a.pullSecrets) the keychain was built for; the list only grows
	)
	images := func(ctx context.Context, ref string) (*source.Image, error) {
		if strings.HasPrefix(ref, source.LayoutPrefix) {
			return nil, fmt.Errorf("%w: image %q is an OCI layout on a node's disk, which only standalone mode reads; push it to a registry",
				compose.ErrInvalidSpec, ref)
		}
		if keychain == nil || keychainFor != len(a.pullSecrets) {
			kc, err := catalog.PullKeychain(ctx, r.apiReader, a.pullSecrets)
			if err != nil {
				return nil, err
			}
			keychain, keychainFor = kc, len(a.pullSecrets)
		}
		opts := r.opts.Source
		opts.Keychain = keychain
		return source.Resolve(ctx, ref, opts)
	}
	a.chain, a.err = compose.Resolve(ctx, ls, lookup, images)
	return a
}

// appendInclude adds inc unless a LayerSet of that name is there: compose
// looks a LayerSet up each time it is included, and the first version
// read is the one that counts.
func appendInclude(list []v1alpha1.IncludedLayerSet, inc v1alpha1.IncludedLayerSet) []v1alpha1.IncludedLayerSet {
	if slices.ContainsFunc(list, func(x v1alpha1.IncludedLayerSet) bool { return x.Name == inc.Name }) {
		return list
	}
	return append(list, inc)
}

// appendSecrets adds the references of add not yet in list, in order.
func appendSecrets(list, add []v1alpha1.SecretReference) []v1alpha1.SecretReference {
	for _, s := range add {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}
