package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeCacheStatus is what one node's layer cache holds, written by the
// node agent.
type NodeCacheStatus struct {
	// LayerCount is the number of layers in the cache.
	// +optional
	LayerCount int32 `json:"layerCount,omitempty"`
	// Bytes is the disk space the cached layers take.
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// BudgetBytes is the size garbage collection keeps the cache under; 0
	// means no limit.
	// +optional
	BudgetBytes int64 `json:"budgetBytes,omitempty"`
	// LayerSets reports, for each LayerSet the node prefetches or has
	// mounted, whether the cache holds every layer of its chain.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=4096
	// +optional
	LayerSets []NodeLayerSetStatus `json:"layerSets,omitempty"`
	// UpdateTime is when the node agent last wrote this status.
	// +optional
	UpdateTime *metav1.Time `json:"updateTime,omitempty"`
}

// NodeLayerSetStatus is one node's readiness for one LayerSet.
type NodeLayerSetStatus struct {
	// Name of the LayerSet.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// ChainID is the LayerSet's status.chainID this entry was checked
	// against; the controller counts the node ready only while it matches,
	// so a report about an older chain does not count.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	ChainID string `json:"chainID,omitempty"`
	// Ready is true when every layer of the chain is in the cache.
	Ready bool `json:"ready"`
	// Missing is the number of layers of the chain not yet in the cache.
	// +kubebuilder:validation:Minimum=0
	// +optional
	Missing int32 `json:"missing,omitempty"`
	// Message says why the node is not ready, such as the last pull error.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
	// PulledBytes is, while the node pulls the chain, how much of it the
	// node holds, in compressed bytes (what registries send): the layers
	// in the cache whole, and what was fetched so far of those being
	// pulled. It only grows during a pull, and TotalBytes less it is what
	// is still to come. Updated every few seconds; unset when no pull
	// runs.
	// +kubebuilder:validation:Minimum=0
	// +optional
	PulledBytes int64 `json:"pulledBytes,omitempty"`
	// TotalBytes is, while the node pulls the chain, the compressed size of
	// all its layers; unset when no pull runs.
	// +kubebuilder:validation:Minimum=0
	// +optional
	TotalBytes int64 `json:"totalBytes,omitempty"`
}

// NodeCache reports one node's layer cache. It is named after its node and
// owned by the Node object, so it goes away with the node.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=nc
// +kubebuilder:printcolumn:name="Layers",type=integer,JSONPath=`.status.layerCount`
// +kubebuilder:printcolumn:name="Size",type=integer,JSONPath=`.status.bytes`
// +kubebuilder:printcolumn:name="Budget",type=integer,JSONPath=`.status.budgetBytes`
// +kubebuilder:printcolumn:name="Updated",type=date,JSONPath=`.status.updateTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeCache struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status NodeCacheStatus `json:"status,omitempty"`
}

// NodeCacheList is a list of NodeCaches.
// +kubebuilder:object:root=true
type NodeCacheList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeCache `json:"items"`
}

// NewNodeCache returns the NodeCache of a node, owned by the Node so that
// the garbage collector deletes it with the node.
func NewNodeCache(nodeName string, nodeUID types.UID) *NodeCache {
	return &NodeCache{
		TypeMeta: metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "NodeCache"},
		ObjectMeta: metav1.ObjectMeta{
			Name: nodeName,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1",
				Kind:       "Node",
				Name:       nodeName,
				UID:        nodeUID,
			}},
		},
	}
}

func init() {
	register(&NodeCache{}, &NodeCacheList{})
}
