package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is the API group and version of LayerSet.
var GroupVersion = schema.GroupVersion{Group: "layerset.io", Version: "v1alpha1"}

// SchemeBuilder registers the LayerSet types with a runtime.Scheme.
var SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

// AddToScheme adds the LayerSet types to a scheme.
var AddToScheme = SchemeBuilder.AddToScheme

func init() {
	SchemeBuilder.Register(&LayerSet{}, &LayerSetList{})
}
