package provisioner

import (
	"context"
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
)

// Event reasons, external-provisioner's.
const (
	reasonProvisioning = "Provisioning"
	reasonSucceeded    = "ProvisioningSucceeded"
	reasonFailed       = "ProvisioningFailed"
	reasonDeleteFailed = "VolumeFailedDelete"
	// reasonDeprecated is ours: a StorageClass uses a parameter that
	// goes away.
	reasonDeprecated = "DeprecatedParameter"
	actionProvision  = "Provision"
	actionDelete     = "Delete"
)

// maxNote bounds an Event's note, which the API server limits to 1 kB.
const maxNote = 1024

// claims provisions a PersistentVolume for each claim of a StorageClass
// of the driver.
type claims struct {
	opts   Options
	client client.Client // cached: claims, volumes, classes
	api    client.Reader // uncached: nodes, one at a time
	events recorder.EventRecorder
}

func (r *claims) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var claim corev1.PersistentVolumeClaim
	if err := r.client.Get(ctx, req.NamespacedName, &claim); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if claim.Spec.VolumeName != "" || !claim.DeletionTimestamp.IsZero() || claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName == "" {
		return reconcile.Result{}, nil
	}
	var class storagev1.StorageClass
	if err := r.client.Get(ctx, client.ObjectKey{Name: *claim.Spec.StorageClassName}, &class); err != nil {
		// A class created later brings the claim back (see Setup).
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if class.Provisioner != r.opts.DriverName {
		return reconcile.Result{}, nil
	}
	node := claim.Annotations[AnnSelectedNode]
	if waitsForConsumer(&class) && node == "" {
		return reconcile.Result{}, nil // the scheduler names the node
	}
	var existing corev1.PersistentVolume
	switch err := r.client.Get(ctx, client.ObjectKey{Name: volumeName(&claim)}, &existing); {
	case err == nil:
		return reconcile.Result{}, nil // provisioned; the binder binds it
	case !apierrors.IsNotFound(err):
		return reconcile.Result{}, err
	}
	if msg := unsupported(&claim); msg != "" {
		r.failed(&claim, "%s", msg)
		return reconcile.Result{}, nil
	}
	if writable(claim.Spec.AccessModes) && node == "" {
		r.failed(&claim, "access modes %v write, and a writable volume keeps its writes on one node, but the claim names none: "+
			"use a StorageClass with volumeBindingMode WaitForFirstConsumer, ask for ReadOnlyMany, or set the annotation %s to a node",
			claim.Spec.AccessModes, AnnSelectedNode)
		return reconcile.Result{}, nil
	}
	var topo *csi.TopologyRequirement
	if node != "" {
		var gone bool
		var err error
		if topo, gone, err = r.topology(ctx, &claim, node); err != nil || gone {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{}, r.provision(ctx, &claim, &class, topo)
}

// topology turns the selected node into the accessibility requirement. A
// node that does not exist is given back to the scheduler (gone); one the
// node plugin has not labelled yet is an error, retried, for writable
// volumes, and no requirement for read-only ones, which every node can
// compose.
func (r *claims) topology(ctx context.Context, claim *corev1.PersistentVolumeClaim, name string) (*csi.TopologyRequirement, bool, error) {
	var node metav1.PartialObjectMetadata
	node.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Node"))
	err := r.api.Get(ctx, client.ObjectKey{Name: name}, &node)
	switch {
	case apierrors.IsNotFound(err):
		r.failed(claim, "the selected node %q does not exist; asking the scheduler to choose again", name)
		return nil, true, r.reschedule(ctx, claim)
	case err != nil:
		return nil, false, fmt.Errorf("reading node %q: %w", name, err)
	}
	segment := node.Labels[names.TopologyKey]
	switch {
	case segment != "":
		return topologyRequirement(segment), false, nil
	case !writable(claim.Spec.AccessModes):
		return nil, false, nil
	}
	r.failed(claim, "node %q has no label %s: the layerset-csi node plugin has not registered on it yet", name, names.TopologyKey)
	return nil, false, fmt.Errorf("node %q has no label %s", name, names.TopologyKey)
}

// reschedule removes the selected node from the claim, which makes the
// scheduler choose a node again.
func (r *claims) reschedule(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	base := claim.DeepCopy()
	delete(claim.Annotations, AnnSelectedNode)
	if err := r.client.Patch(ctx, claim, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("removing annotation %s from claim %s/%s: %w", AnnSelectedNode, claim.Namespace, claim.Name, err)
	}
	return nil
}

// provision creates the volume and its PersistentVolume. CreateVolume is
// idempotent by name, so a failure anywhere is retried from the start.
func (r *claims) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, topo *csi.TopologyRequirement) error {
	logger := log.FromContext(ctx)
	req, err := createRequest(claim, class, topo)
	if err != nil {
		r.failed(claim, "%v", err)
		return nil // nothing changes until the claim or class does
	}
	r.events.Eventf(claim, nil, corev1.EventTypeNormal, reasonProvisioning, actionProvision,
		"External provisioner is provisioning volume for claim %q", claim.Namespace+"/"+claim.Name)
	if note := deprecatedParameters(claim, class); note != "" {
		r.events.Eventf(claim, nil, corev1.EventTypeWarning, reasonDeprecated, actionProvision, "%s", truncate(note))
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	resp, err := r.opts.Controller.CreateVolume(cctx, req)
	cancel()
	if err != nil {
		r.failed(claim, "creating volume %s: %s", req.GetName(), status.Convert(err).Message())
		if status.Code(err) == codes.ResourceExhausted && claim.Annotations[AnnSelectedNode] != "" {
			return r.reschedule(ctx, claim)
		}
		return fmt.Errorf("creating volume %s for claim %s/%s: %w", req.GetName(), claim.Namespace, claim.Name, err)
	}
	pv := persistentVolume(claim, class, req, resp.GetVolume(), r.opts.DriverName)
	if err := r.client.Create(ctx, pv); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return r.checkExisting(ctx, claim, pv.Name)
		}
		// Nothing refers to the volume yet: delete it, so a claim deleted
		// meanwhile leaves nothing behind; the retry creates it again.
		dctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
		if _, derr := r.opts.Controller.DeleteVolume(dctx, &csi.DeleteVolumeRequest{VolumeId: resp.GetVolume().GetVolumeId()}); derr != nil {
			logger.Error(derr, "Cannot delete a volume whose PersistentVolume failed to be created; it is orphaned until the claim is provisioned again",
				"volumeID", resp.GetVolume().GetVolumeId())
		}
		return fmt.Errorf("creating PersistentVolume %s for claim %s/%s: %w", pv.Name, claim.Namespace, claim.Name, err)
	}
	logger.Info("Provisioned volume", "pv", pv.Name, "volumeID", pv.Spec.CSI.VolumeHandle, "layerSet", pv.Spec.CSI.VolumeAttributes[names.ContextLayerSet])
	r.events.Eventf(claim, nil, corev1.EventTypeNormal, reasonSucceeded, actionProvision, "Successfully provisioned volume %s", pv.Name)
	return nil
}

// checkExisting accepts a PersistentVolume of the expected name that was
// made for this claim by an earlier attempt.
func (r *claims) checkExisting(ctx context.Context, claim *corev1.PersistentVolumeClaim, name string) error {
	var pv corev1.PersistentVolume
	if err := r.api.Get(ctx, client.ObjectKey{Name: name}, &pv); err != nil {
		return fmt.Errorf("reading PersistentVolume %s: %w", name, err)
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != claim.UID {
		r.failed(claim, "PersistentVolume %s exists and is not this claim's", name)
		return fmt.Errorf("PersistentVolume %s exists and is not claim %s/%s's", name, claim.Namespace, claim.Name)
	}
	return nil
}

func (r *claims) failed(claim *corev1.PersistentVolumeClaim, format string, args ...any) {
	r.events.Eventf(claim, nil, corev1.EventTypeWarning, reasonFailed, actionProvision, "%s", truncate(fmt.Sprintf(format, args...)))
}

func truncate(s string) string {
	if len(s) <= maxNote {
		return s
	}
	cut := maxNote - 3
	for cut > 0 && s[cut]&0xC0 == 0x80 { // inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "..."
}
