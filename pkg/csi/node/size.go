package node

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/layers"
	"github.com/layerset/layerset-csi/pkg/quota"
)

// Event reasons the node gives.
const (
	reasonDeprecated  = "DeprecatedAttribute"
	reasonSizeIgnored = "SizeNotEnforced"
	eventActionSize   = "LimitVolumeSize"
)

// askedSize is the size a volume context asks for: volumeAttributes.size
// (a pod's inline volume, a static PV) or what CreateVolume recorded, or
// the deprecated upperSizeHint. deprecated says the old key was used.
func askedSize(vc map[string]string) (bytes int64, deprecated bool, err error) {
	key := names.ContextSize
	s, ok := vc[key]
	if !ok {
		if s, ok = vc[names.ContextUpperSizeHint]; !ok {
			return 0, false, nil
		}
		key, deprecated = names.ContextUpperSizeHint, true
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, deprecated, status.Errorf(codes.InvalidArgument, "volume attribute %s %q is not a quantity such as 512Mi or 10Gi", key, s)
	}
	switch v := q.Value(); {
	case q.Sign() <= 0:
		return 0, deprecated, status.Errorf(codes.InvalidArgument, "volume attribute %s %q must be positive", key, s)
	case v < quota.MinLimit:
		return 0, deprecated, status.Errorf(codes.InvalidArgument, "volume attribute %s %q is below the smallest size, 1Mi", key, s)
	case v > quota.MaxLimit:
		return 0, deprecated, status.Errorf(codes.InvalidArgument, "volume attribute %s %q is above the largest size, 1Pi", key, s)
	default:
		return v, deprecated, nil
	}
}

// warnSize tells the volume's owner what became of the size it asked for,
// in an event: the pod of an inline volume, the PersistentVolume otherwise.
func (n *Server) warnSize(ctx context.Context, vc map[string]string, id string, asked int64, deprecated bool, vol *layers.Volume) {
	if n.cfg.Events == nil {
		return
	}
	regarding := volumeOwner(id, vc)
	if deprecated {
		n.cfg.Events.Eventf(regarding, nil, corev1.EventTypeWarning, reasonDeprecated, eventActionSize,
			"volume %s: volume attribute %s is deprecated and read for one more release; use %s", id, names.ContextUpperSizeHint, names.ContextSize)
	}
	if asked > 0 && vol != nil && vol.Limit == nil && !vol.ReadOnly {
		why := "this node ignores volume sizes (--quota=off)"
		if ok, _ := n.cfg.Store.Limits().Enforced(); ok {
			why = "the volume was made without a size and its upper cannot be limited after the fact"
		}
		n.cfg.Events.Eventf(regarding, nil, corev1.EventTypeWarning, reasonSizeIgnored, eventActionSize,
			"volume %s asked for %s, which is not enforced: %s", id, quantity(asked), why)
	}
}

func quantity(bytes int64) string { return resource.NewQuantity(bytes, resource.BinarySI).String() }
