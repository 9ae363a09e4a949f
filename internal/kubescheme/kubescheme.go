// Package kubescheme builds the one runtime.Scheme every Kubernetes client
// of layerset-csi uses: the core and storage types and the LayerSet API.
package kubescheme

import (
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
)

// New returns a scheme with core/v1, storage/v1 and layerset.io/v1alpha1.
func New() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, storagev1.AddToScheme, v1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}
