package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of LayerSet.
var GroupVersion = schema.GroupVersion{Group: "layerset.io", Version: "v1alpha1"}

var (
	// SchemeBuilder registers the LayerSet types with a runtime.Scheme.
	SchemeBuilder runtime.SchemeBuilder
	// AddToScheme adds the LayerSet types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// register has AddToScheme add objects, types of GroupVersion, with the
// group version's common meta types.
func register(objects ...runtime.Object) {
	SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(GroupVersion, objects...)
		metav1.AddToGroupVersion(s, GroupVersion)
		return nil
	})
}

func init() {
	register(&LayerSet{}, &LayerSetList{})
}
