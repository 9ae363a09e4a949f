package layers

import "errors"

var (
	// ErrLayerMissing means a volume names a layer the store does not hold;
	// pull it first.
	ErrLayerMissing = errors.New("layer not in store")
	// ErrTooManyLayers means a chain exceeds the overlayfs lower-layer limit.
	ErrTooManyLayers = errors.New("too many layers")
	// ErrDigestMismatch means a layer's content did not match its digest.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrVolumeNotFound means no volume with that id or target exists.
	ErrVolumeNotFound = errors.New("volume not found")
	// ErrInvalid means the caller's input cannot be used as given.
	ErrInvalid = errors.New("invalid argument")
	// ErrTargetBusy means a mount target already has a mount the store
	// did not make.
	ErrTargetBusy = errors.New("mount target busy")
	// ErrLimit means a volume's size limit could not be made, applied or
	// raised; what it wraps says why (quota.ErrUnsupported: this node
	// cannot enforce sizes the way it was told to).
	ErrLimit = errors.New("size limit")
)
