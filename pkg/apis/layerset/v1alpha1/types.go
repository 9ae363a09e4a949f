package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// MaxLayers is the most lower layers one volume may have, the init layer
// included: the overlayfs limit on lower directories.
const MaxLayers = 500

// LayerSetSpec describes the chain of read-only layers a volume is built from
// and the files generated for each volume.
// +kubebuilder:validation:XValidation:rule="(has(self.layers) && size(self.layers) > 0) || has(self.init)",message="a LayerSet needs at least one layer or an init layer"
type LayerSetSpec struct {
	// Layers are the sources of the read-only chain, bottom first, in the
	// order an image lists its layers.
	// +kubebuilder:validation:MaxItems=500
	// +listType=atomic
	// +optional
	Layers []LayerSource `json:"layers,omitempty"`

	// Init describes the per-volume init layer: files generated for each
	// volume and placed above the chain, below the writable upper.
	// +optional
	Init *InitLayer `json:"init,omitempty"`

	// PullSecrets name kubernetes.io/dockerconfigjson Secrets used to pull
	// the images of this LayerSet.
	// +listType=atomic
	// +optional
	PullSecrets []SecretReference `json:"pullSecrets,omitempty"`

	// Prefetch selects the nodes that should hold this LayerSet's layers
	// before any pod asks for them.
	// +optional
	Prefetch *metav1.LabelSelector `json:"prefetch,omitempty"`

	// AllowSetuid mounts this LayerSet's volumes without nosuid, so that
	// setuid and setgid binaries of its images take effect. Off by
	// default: volumes are mounted nosuid,nodev.
	// +optional
	AllowSetuid bool `json:"allowSetuid,omitempty"`

	// DefaultSize limits the writable upper of this LayerSet's volumes
	// that ask for no size (an inline volume without volumeAttributes.size).
	// Unset, such volumes have no limit.
	// +optional
	DefaultSize *resource.Quantity `json:"defaultSize,omitempty"`

	// MaxSize is the largest size a volume of this LayerSet may ask for;
	// a larger request is refused, naming both.
	// +optional
	MaxSize *resource.Quantity `json:"maxSize,omitempty"`
}

// LayerSource is one entry of a chain: every layer of an image, or the whole
// resolved chain of another LayerSet. Exactly one field is set.
// +kubebuilder:validation:XValidation:rule="has(self.image) != has(self.layerSet)",message="exactly one of image or layerSet must be set"
type LayerSource struct {
	// Image is a registry reference (host/repo:tag or host/repo@sha256:...)
	// or a node-local OCI image layout written oci:PATH[:TAG].
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Image string `json:"image,omitempty"`

	// LayerSet names another LayerSet whose resolved chain is included here.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	LayerSet string `json:"layerSet,omitempty"`
}

// InitLayer lists the files generated into each volume's init layer.
type InitLayer struct {
	// Files are written in order; a later file with the same path wins.
	// +kubebuilder:validation:MaxItems=256
	// +listType=atomic
	// +optional
	Files []InitFile `json:"files,omitempty"`
}

// InitFile is one generated file. Exactly one content source is set.
// +kubebuilder:validation:XValidation:rule="[has(self.content), has(self.template), has(self.configMapKeyRef), has(self.secretKeyRef)].filter(x, x).size() == 1",message="exactly one of content, template, configMapKeyRef or secretKeyRef must be set"
type InitFile struct {
	// Path is relative to the volume root; it must not contain "..".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",message="path must be relative and must not contain '..'"
	Path string `json:"path"`

	// Mode is the file's permission bits; 0644 when unset.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=511
	// +optional
	Mode *int32 `json:"mode,omitempty"`

	// Content is the file's literal content.
	// +optional
	Content *string `json:"content,omitempty"`

	// Template is a Go text/template filled from pod information:
	// {{.PodName}}, {{.PodNamespace}}, {{.PodUID}}, {{.ServiceAccount}},
	// {{.NodeName}}, {{.VolumeID}}. Its work is bounded before it runs:
	// range only over an integer constant, at most 10000 iterations in
	// all of a volume's templates, no recursive template calls, and at
	// most 1 MiB a file, 16 MiB and 256 files a volume.
	// +optional
	Template *string `json:"template,omitempty"`

	// ConfigMapKeyRef takes the content from a ConfigMap key.
	// +optional
	ConfigMapKeyRef *KeyReference `json:"configMapKeyRef,omitempty"`

	// SecretKeyRef takes the content from a Secret key.
	// +optional
	SecretKeyRef *KeyReference `json:"secretKeyRef,omitempty"`
}

// KeyReference points at one key of a namespaced ConfigMap or Secret.
type KeyReference struct {
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// SecretReference names a namespaced Secret.
type SecretReference struct {
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// Condition types of a LayerSet.
const (
	// ConditionResolved is true when every entry of spec.layers resolved to
	// pinned layer digests.
	ConditionResolved = "Resolved"
	// ConditionReady is true when the LayerSet can be mounted.
	ConditionReady = "Ready"
)

// Reasons of the Resolved and Ready conditions. Each names what a person has
// to fix; the condition's message says where.
const (
	// ReasonResolved: the chain is pinned (Resolved is true).
	ReasonResolved = "Resolved"
	// ReasonReady: volumes can be mounted (Ready is true).
	ReasonReady = "Ready"
	// ReasonImageNotFound: a registry or OCI layout has no such image, tag
	// or platform.
	ReasonImageNotFound = "ImageNotFound"
	// ReasonUnauthorized: the registry refused the credentials of the pull
	// secrets, or none were given.
	ReasonUnauthorized = "Unauthorized"
	// ReasonPullSecretInvalid: a pull secret is missing, has the wrong type,
	// or does not parse.
	ReasonPullSecretInvalid = "PullSecretInvalid"
	// ReasonCycle: LayerSets include each other.
	ReasonCycle = "Cycle"
	// ReasonTooManyLayers: the chain plus the init layer exceeds MaxLayers.
	ReasonTooManyLayers = "TooManyLayers"
	// ReasonInvalidSpec: the spec or an image reference in it cannot be used.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonLayerSetNotFound: an included LayerSet does not exist.
	ReasonLayerSetNotFound = "LayerSetNotFound"
	// ReasonImageUnsupported: an image's manifest, config or layer media
	// types cannot be used (for example an OCI artifact, or foreign layers).
	ReasonImageUnsupported = "ImageUnsupported"
	// ReasonRegistryError: the registry could not be reached or failed; the
	// controller retries with backoff.
	ReasonRegistryError = "RegistryError"
)

// ResolvedLayer is one layer of the resolved chain.
type ResolvedLayer struct {
	// Digest is the compressed blob digest.
	Digest string `json:"digest"`
	// DiffID is the uncompressed digest, the key of the node cache.
	DiffID string `json:"diffID"`
	// MediaType of the blob.
	// +optional
	MediaType string `json:"mediaType,omitempty"`
	// Size of the compressed blob in bytes.
	Size int64 `json:"size"`
	// Source is the pinned reference (repo@digest) the layer came from.
	Source string `json:"source"`
	// Entry is the index in spec.layers this layer came from.
	Entry int32 `json:"entry"`
}

// IncludedLayerSet is a LayerSet whose spec a resolved chain was composed
// from, directly or through other LayerSets.
type IncludedLayerSet struct {
	Name string `json:"name"`
	// UID tells a LayerSet apart from an earlier one of the same name.
	UID types.UID `json:"uid"`
	// Generation is the metadata.generation of the spec that was used.
	Generation int64 `json:"generation"`
}

// MaxListedNodes bounds NodeCacheState.Nodes, so that the status of a
// LayerSet on a large cluster stays small; Ready counts every node.
const MaxListedNodes = 100

// NodeCacheState summarises the node caches.
type NodeCacheState struct {
	// Wanted is the number of nodes that should hold the layers: those
	// spec.prefetch selects or, without prefetch, those whose NodeCache
	// reports this LayerSet.
	Wanted int32 `json:"wanted"`
	// Ready is the number of those nodes that hold all of them.
	Ready int32 `json:"ready"`
	// Nodes lists the nodes that hold every layer, sorted, at most
	// MaxListedNodes of them.
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Nodes []string `json:"nodes,omitempty"`
}

// LayerSetStatus is the observed state of a LayerSet.
type LayerSetStatus struct {
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Chain is the resolved chain, bottom first, pinned to digests.
	// +listType=atomic
	// +optional
	Chain []ResolvedLayer `json:"chain,omitempty"`
	// LayerCount is len(chain), shown by kubectl.
	// +optional
	LayerCount int32 `json:"layerCount,omitempty"`
	// TotalSize is the compressed size of the chain in bytes.
	// +optional
	TotalSize int64 `json:"totalSize,omitempty"`
	// ChainID identifies the chain: the OCI chain ID of its diffIDs, bottom
	// first. Nodes report readiness against it in NodeCache status.
	// +optional
	ChainID string `json:"chainID,omitempty"`
	// Includes lists the LayerSets the chain was composed from, directly or
	// not, with the generations used; a change to one re-resolves the chain.
	// +listType=map
	// +listMapKey=name
	// +optional
	Includes []IncludedLayerSet `json:"includes,omitempty"`
	// PullSecrets are the Secrets the chain is pulled with: this LayerSet's
	// and those of every LayerSet it includes.
	// +listType=atomic
	// +optional
	PullSecrets []SecretReference `json:"pullSecrets,omitempty"`
	// Cache is the per-node cache readiness.
	// +optional
	Cache NodeCacheState `json:"cache,omitempty"`
	// ReadyNodes renders cache readiness as "ready/wanted" for kubectl.
	// +optional
	ReadyNodes string `json:"readyNodes,omitempty"`
}

// LayerSet is a cluster-scoped, ordered chain of read-only layers that
// layerset-csi composes into overlayfs volumes.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ls
// +kubebuilder:printcolumn:name="Layers",type=integer,JSONPath=`.status.layerCount`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.totalSize`
// +kubebuilder:printcolumn:name="Ready Nodes",type=string,JSONPath=`.status.readyNodes`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type LayerSet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   LayerSetSpec   `json:"spec,omitempty"`
	Status LayerSetStatus `json:"status,omitempty"`
}

// LayerSetList is a list of LayerSets.
// +kubebuilder:object:root=true
type LayerSetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []LayerSet `json:"items"`
}
