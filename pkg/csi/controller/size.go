package controller

import (
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/apis/layerset/v1alpha1"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// sizeSource says where a new volume's size came from, for the log.
type sizeSource string

const (
	sizeFromRange    sizeSource = "capacity_range"
	sizeFromHint     sizeSource = paramUpperSizeHint // deprecated
	sizeFromDefault  sizeSource = "LayerSet defaultSize"
	sizeNotRequested sizeSource = "none"
)

// quantity renders bytes as the canonical Kubernetes quantity, the form
// names.ContextSize carries: 67108864 is "64Mi".
func quantity(bytes int64) string { return resource.NewQuantity(bytes, resource.BinarySI).String() }

// checkCapacityRange validates a capacity range and picks the size it asks
// for: required_bytes, else limit_bytes; 0 when it asks for none. A
// malformed range is InvalidArgument, an absurd size OutOfRange, the code
// CSI gives a capacity the plugin does not support.
func checkCapacityRange(r *csi.CapacityRange) (required, limit, size int64, err error) {
	required, limit = r.GetRequiredBytes(), r.GetLimitBytes()
	switch {
	case required < 0 || limit < 0:
		return 0, 0, 0, status.Errorf(codes.InvalidArgument, "capacity_range %d..%d: bytes must not be negative", required, limit)
	case limit > 0 && required > limit:
		return 0, 0, 0, status.Errorf(codes.InvalidArgument, "capacity_range: required_bytes %d exceeds limit_bytes %d", required, limit)
	}
	size = required
	if size == 0 {
		size = limit
	}
	if err := checkBound(size); err != nil {
		return 0, 0, 0, err
	}
	return required, limit, size, nil
}

// checkBound refuses a size above names.MaxSize.
func checkBound(size int64) error {
	if size > names.MaxSize {
		return status.Errorf(codes.OutOfRange, "a size of %d bytes is larger than any volume can be (at most %s)", size, quantity(names.MaxSize))
	}
	return nil
}

// checkMinSize refuses a writable volume a size below names.MinSize. A
// read-only volume's size limits nothing, so any is accepted; 0 is none.
func checkMinSize(size int64, writable bool) error {
	if writable && size > 0 && size < names.MinSize {
		return status.Errorf(codes.OutOfRange, "a size of %s is below the smallest a writable volume can have, %s", quantity(size), quantity(names.MinSize))
	}
	return nil
}

// hintBytes is the size the deprecated upperSizeHint parameter asks for;
// hint is canonical (parseClassParams made it so) and positive.
func hintBytes(hint string) (int64, error) {
	q, err := resource.ParseQuantity(hint)
	if err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "parameter %s %q: %v", paramUpperSizeHint, hint, err)
	}
	// Compared as a quantity first: Value() of a huge one does not fit.
	if q.CmpInt64(names.MaxSize) > 0 {
		return 0, status.Errorf(codes.OutOfRange, "parameter %s %s is larger than any volume can be (at most %s)",
			paramUpperSizeHint, hint, quantity(names.MaxSize))
	}
	return q.Value(), nil
}

// requestedSize is the size a CreateVolume asks for: its capacity range;
// without one, the StorageClass's deprecated upperSizeHint; else none.
func requestedSize(rangeSize int64, params classParams) (int64, sizeSource, error) {
	switch {
	case rangeSize > 0:
		return rangeSize, sizeFromRange, nil
	case params.UpperSizeHint != "":
		size, err := hintBytes(params.UpperSizeHint)
		return size, sizeFromHint, err
	}
	return 0, sizeNotRequested, nil
}

// checkMaxSize refuses a size above the LayerSet's spec.maxSize, naming
// both. what says who asks, e.g. `volume "pvc-1"`. An unlimited volume
// (size 0) asks for nothing and passes.
func checkMaxSize(ls *v1alpha1.LayerSet, size int64, what string) error {
	if ls == nil || ls.Spec.MaxSize == nil || size == 0 || ls.Spec.MaxSize.CmpInt64(size) >= 0 {
		return nil
	}
	return status.Errorf(codes.OutOfRange, "%s: size %s exceeds maxSize %s of LayerSet %q",
		what, quantity(size), ls.Spec.MaxSize.String(), ls.Name)
}

// defaultSize is the size the LayerSet gives volumes that ask for none,
// 0 if it gives none.
func defaultSize(ls *v1alpha1.LayerSet) (int64, error) {
	if ls == nil || ls.Spec.DefaultSize == nil || ls.Spec.DefaultSize.Sign() <= 0 {
		return 0, nil
	}
	if ls.Spec.DefaultSize.CmpInt64(names.MaxSize) > 0 {
		return 0, status.Errorf(codes.FailedPrecondition, "LayerSet %q: defaultSize %s is larger than any volume can be (at most %s)",
			ls.Name, ls.Spec.DefaultSize.String(), quantity(names.MaxSize))
	}
	return ls.Spec.DefaultSize.Value(), nil
}

// describeSize renders a volume's size for messages: "64Mi", or
// "unlimited".
func describeSize(size int64) string {
	if size == 0 {
		return "unlimited"
	}
	return quantity(size)
}
