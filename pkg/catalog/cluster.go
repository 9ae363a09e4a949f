package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/sync/singleflight"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/layerset/layerset-csi/internal/kubescheme"
	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/source"
)

// ErrPullSecretInvalid means a pull secret a LayerSet names cannot be
// used: it does not exist, cannot be read, or does not hold a valid
// .dockerconfigjson.
var ErrPullSecretInvalid = errors.New("pull secret invalid")

// pinnedTTL bounds how long a pinned image's resolution is reused. The
// layers behind a digest never change, but the credentials it was resolved
// with may be rotated; after this long the pull secrets are read again.
const pinnedTTL = 5 * time.Minute

// Cluster is the catalog of a node in a cluster: LayerSets are read from a
// watch on the API server, and a volume mounts the chain the controller
// pinned in status.chain, so every node mounts the same bytes whatever the
// tags point at now.
type Cluster struct {
	layerSets client.Reader // watch-backed
	api       client.Reader // direct reads, for Secrets and ConfigMaps
	opts      source.Options

	flight singleflight.Group
	now    func() time.Time

	mu     sync.Mutex
	images map[imageKey]pinnedImage
}

var _ Catalog = (*Cluster)(nil)

// imageKey is a pinned reference and the pull secrets it is fetched with.
type imageKey struct {
	pinned  string
	secrets string
}

// NewCluster serves LayerSets read through layerSets, normally a
// controller-runtime cache, and reads pull secrets through api, which
// should not be a cache: a node has no business listing every Secret. The
// Keychain of opts is replaced, per LayerSet, by PullKeychain's.
func NewCluster(layerSets, api client.Reader, opts source.Options) *Cluster {
	return &Cluster{
		layerSets: layerSets,
		api:       api,
		opts:      opts,
		now:       time.Now,
		images:    map[imageKey]pinnedImage{},
	}
}

// StartCluster watches the LayerSets of the cluster cfg points at and
// returns the catalog once the watch has listed them all. The watch stops
// when ctx ends. Only LayerSets are watched; reading anything else through
// the cache fails rather than starting a cluster-wide watch.
func StartCluster(ctx context.Context, cfg *rest.Config, opts source.Options) (*Cluster, error) {
	scheme, err := kubescheme.New()
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{
		Scheme:                      scheme,
		ReaderFailOnMissingInformer: true,
		DefaultTransform:            cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, fmt.Errorf("LayerSet cache: %w", err)
	}
	if _, err := c.GetInformer(ctx, &v1alpha1.LayerSet{}); err != nil {
		return nil, fmt.Errorf("LayerSet cache: %w", err)
	}
	api, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return nil, fmt.Errorf("watching LayerSets: %w", err)
		default:
			return nil, fmt.Errorf("watching LayerSets: %w", context.Cause(ctx))
		}
	}
	return NewCluster(c, api, opts), nil
}

// Resolve returns the LayerSet called name and the chain the controller
// pinned for it. It fails with ErrNotReady, carrying the Ready condition's
// reason and message, until the controller has resolved the LayerSet's
// current generation.
func (c *Cluster) Resolve(ctx context.Context, name string) (*v1alpha1.LayerSet, []compose.Layer, error) {
	var ls v1alpha1.LayerSet
	if err := c.layerSets.Get(ctx, client.ObjectKey{Name: name}, &ls); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, fmt.Errorf("%w: %q", compose.ErrLayerSetNotFound, name)
		}
		return nil, nil, fmt.Errorf("reading LayerSet %q: %w", name, err)
	}
	if err := checkResolved(&ls); err != nil {
		return nil, nil, err
	}
	chain, err := c.chain(ctx, &ls)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: LayerSet %q: %w", ErrNotReady, name, err)
	}
	return &ls, chain, nil
}

// checkResolved returns nil when the status describes the LayerSet's
// current spec and its chain is resolved.
func checkResolved(ls *v1alpha1.LayerSet) error {
	resolved := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionResolved)
	if ls.Status.ObservedGeneration == ls.Generation && resolved != nil &&
		resolved.ObservedGeneration == ls.Generation && resolved.Status == metav1.ConditionTrue {
		return nil
	}
	if ls.Status.ObservedGeneration != ls.Generation || resolved == nil || resolved.ObservedGeneration != ls.Generation {
		return fmt.Errorf("%w: LayerSet %q: the controller has not resolved generation %d yet (is layerset-csi controller running?)",
			ErrNotReady, ls.Name, ls.Generation)
	}
	cond := meta.FindStatusCondition(ls.Status.Conditions, v1alpha1.ConditionReady)
	if cond == nil || cond.Status == metav1.ConditionTrue {
		cond = resolved
	}
	err := fmt.Errorf("%w: LayerSet %q: %s: %s", ErrNotReady, ls.Name, cond.Reason, cond.Message)
	// Keep compose's sentinels for what the spec itself gets wrong, so a
	// caller reports them as compose.Resolve's errors are reported.
	switch cond.Reason {
	case v1alpha1.ReasonCycle:
		return fmt.Errorf("%w: %w", err, compose.ErrCycle)
	case v1alpha1.ReasonTooManyLayers:
		return fmt.Errorf("%w: %w", err, compose.ErrTooManyLayers)
	case v1alpha1.ReasonInvalidSpec:
		return fmt.Errorf("%w: %w", err, compose.ErrInvalidSpec)
	}
	return err
}

// chain rebuilds status.chain as layers that can be opened: each distinct
// pinned image is resolved once and its layers picked by diffID.
func (c *Cluster) chain(ctx context.Context, ls *v1alpha1.LayerSet) ([]compose.Layer, error) {
	secrets := secretsKey(ls.Status.PullSecrets)
	var kc authn.Keychain // read only if an image is not cached
	keychain := func() (authn.Keychain, error) {
		if kc != nil {
			return kc, nil
		}
		var err error
		kc, err = PullKeychain(ctx, c.api, ls.Status.PullSecrets)
		return kc, err
	}
	images := map[string]*source.Image{}
	chain := make([]compose.Layer, 0, len(ls.Status.Chain))
	for i, rl := range ls.Status.Chain {
		img, ok := images[rl.Source]
		if !ok {
			var err error
			if img, err = c.image(ctx, imageKey{pinned: rl.Source, secrets: secrets}, keychain); err != nil {
				return nil, err
			}
			images[rl.Source] = img
		}
		l, err := pick(img, rl)
		if err != nil {
			return nil, fmt.Errorf("status.chain[%d]: %w", i, err)
		}
		chain = append(chain, compose.Layer{Layer: l, Entry: int(rl.Entry)})
	}
	return chain, nil
}

// pick finds the layer of img that rl names.
func pick(img *source.Image, rl v1alpha1.ResolvedLayer) (source.Layer, error) {
	for _, l := range img.Layers {
		if l.DiffID.String() == rl.DiffID && l.Digest.String() == rl.Digest {
			return l, nil
		}
	}
	return source.Layer{}, fmt.Errorf("image %s has no layer %s (diffID %s); status.chain does not match the registry",
		img.Pinned, rl.Digest, rl.DiffID)
}

type pinnedImage struct {
	img     *source.Image
	expires time.Time
}

// image resolves a pinned reference, once for all concurrent callers, and
// remembers it for pinnedTTL. Failures are not remembered.
func (c *Cluster) image(ctx context.Context, key imageKey, keychain func() (authn.Keychain, error)) (*source.Image, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.images[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.img, nil
	}
	v, err, _ := c.flight.Do(key.pinned+"\x00"+key.secrets, func() (any, error) {
		kc, err := keychain()
		if err != nil {
			return nil, err
		}
		opts := c.opts
		opts.Keychain = kc
		img, err := source.Resolve(ctx, key.pinned, opts)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		for k, e := range c.images {
			if !now.Before(e.expires) {
				delete(c.images, k)
			}
		}
		c.images[key] = pinnedImage{img: img, expires: now.Add(pinnedTTL)}
		return img, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*source.Image), nil
}

func secretsKey(refs []v1alpha1.SecretReference) string {
	parts := make([]string, len(refs))
	for i, r := range refs {
		parts[i] = r.Namespace + "/" + r.Name
	}
	return strings.Join(parts, ",")
}

// PullKeychain returns the keychain images are pulled with: the
// credentials of the kubernetes.io/dockerconfigjson Secrets named by refs,
// in order, then authn.DefaultKeychain. The controller resolves with it and
// nodes pull with it, so both see a registry with the same credentials.
// Errors that a person must fix wrap ErrPullSecretInvalid and name the
// Secret.
func PullKeychain(ctx context.Context, r client.Reader, refs []v1alpha1.SecretReference) (authn.Keychain, error) {
	keychains := make([]authn.Keychain, 0, len(refs)+1)
	for _, ref := range refs {
		var s corev1.Secret
		if err := r.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &s); err != nil {
			switch {
			case apierrors.IsNotFound(err):
				return nil, fmt.Errorf("%w: Secret %s/%s does not exist", ErrPullSecretInvalid, ref.Namespace, ref.Name)
			case apierrors.IsForbidden(err):
				return nil, fmt.Errorf("%w: Secret %s/%s cannot be read: %w", ErrPullSecretInvalid, ref.Namespace, ref.Name, err)
			}
			return nil, fmt.Errorf("reading pull secret %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		if s.Type != corev1.SecretTypeDockerConfigJson {
			return nil, fmt.Errorf("%w: Secret %s/%s has type %q; want %q", ErrPullSecretInvalid,
				ref.Namespace, ref.Name, s.Type, corev1.SecretTypeDockerConfigJson)
		}
		data, ok := s.Data[corev1.DockerConfigJsonKey]
		if !ok {
			return nil, fmt.Errorf("%w: Secret %s/%s has no key %q", ErrPullSecretInvalid,
				ref.Namespace, ref.Name, corev1.DockerConfigJsonKey)
		}
		kc, err := source.KeychainFromDockerConfigJSON(data)
		if err != nil {
			return nil, fmt.Errorf("%w: Secret %s/%s: %w", ErrPullSecretInvalid, ref.Namespace, ref.Name, err)
		}
		keychains = append(keychains, kc)
	}
	return source.MultiKeychain(append(keychains, authn.DefaultKeychain)...), nil
}

// KeyReader reads init file contents from ConfigMap and Secret keys
// through r, which should read from the API server directly, not from a
// cache. A missing object or key wraps ErrNotReady: the volume can be
// mounted once it exists.
func KeyReader(r client.Reader) compose.KeyReader {
	return func(ctx context.Context, kind string, ref v1alpha1.KeyReference) ([]byte, error) {
		key := client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}
		var values map[string][]byte
		switch kind {
		case compose.KindConfigMap:
			var cm corev1.ConfigMap
			if err := r.Get(ctx, key, &cm); err != nil {
				return nil, keyError(kind, ref, err)
			}
			values = cm.BinaryData
			if v, ok := cm.Data[ref.Key]; ok {
				return []byte(v), nil
			}
		case compose.KindSecret:
			var s corev1.Secret
			if err := r.Get(ctx, key, &s); err != nil {
				return nil, keyError(kind, ref, err)
			}
			values = s.Data
		default:
			return nil, fmt.Errorf("%w: cannot read keys of a %q", compose.ErrInvalidSpec, kind)
		}
		v, ok := values[ref.Key]
		if !ok {
			return nil, fmt.Errorf("%w: %s %s/%s has no key %q", ErrNotReady, kind, ref.Namespace, ref.Name, ref.Key)
		}
		return v, nil
	}
}

func keyError(kind string, ref v1alpha1.KeyReference, err error) error {
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: %s %s/%s does not exist", ErrNotReady, kind, ref.Namespace, ref.Name)
	}
	return fmt.Errorf("reading %s %s/%s: %w", kind, ref.Namespace, ref.Name, err)
}
