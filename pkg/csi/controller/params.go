package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/layerset/layerset-csi/pkg/csi/names"
	"github.com/layerset/layerset-csi/pkg/csi/rpc"
	"github.com/layerset/layerset-csi/pkg/volumeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// The keys volumes were sized by before names.ContextSize and the claim's
// storage request, still read for one release. Named once here, where the
// deprecation is acknowledged.
const (
	paramUpperSizeHint   = names.ParamUpperSizeHint   //nolint:staticcheck // SA1019: read for one release (pkg/csi/names)
	contextUpperSizeHint = names.ContextUpperSizeHint //nolint:staticcheck // SA1019: read for one release (pkg/csi/names)
)

// isProvisionerParam tells the parameters external-provisioner adds with
// --extra-create-metadata; they describe the claim, not the volume.
func isProvisionerParam(key string) bool {
	switch key {
	case "csi.storage.k8s.io/pvc/name", "csi.storage.k8s.io/pvc/namespace", "csi.storage.k8s.io/pv/name":
		return true
	}
	return false
}

// classParams are the parameters that make one volume differ from another.
type classParams struct {
	LayerSet      string `json:"layerSet"`
	UpperSizeHint string `json:"upperSizeHint,omitempty"` // canonical quantity
}

// parseClassParams validates CreateVolume's parameters. Unknown keys are refused
// rather than ignored: a misspelt key would otherwise silently do nothing.
func parseClassParams(params map[string]string) (classParams, error) {
	var unknown []string
	for k := range params {
		if k != names.ParamLayerSet && k != paramUpperSizeHint && !isProvisionerParam(k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return classParams{}, status.Errorf(codes.InvalidArgument, "unknown parameters %q; a StorageClass of this driver takes %s (required) and %s",
			unknown, names.ParamLayerSet, paramUpperSizeHint)
	}
	var p classParams
	p.LayerSet = params[names.ParamLayerSet]
	if p.LayerSet == "" {
		return classParams{}, status.Errorf(codes.InvalidArgument, "parameter %s is missing: set it to the name of the LayerSet the volumes are composed from", names.ParamLayerSet)
	}
	if errs := validation.IsDNS1123Subdomain(p.LayerSet); len(errs) > 0 {
		return classParams{}, status.Errorf(codes.InvalidArgument, "parameter %s %q is not a valid LayerSet name: %s", names.ParamLayerSet, p.LayerSet, strings.Join(errs, "; "))
	}
	if s, ok := params[paramUpperSizeHint]; ok {
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 {
			return classParams{}, status.Errorf(codes.InvalidArgument, "parameter %s %q must be a positive quantity such as 512Mi or 10Gi", paramUpperSizeHint, s)
		}
		// Before it is made canonical: the canonical form of a quantity
		// beyond int64 is not the number written.
		if q.CmpInt64(names.MaxSize) > 0 {
			return classParams{}, status.Errorf(codes.InvalidArgument, "parameter %s %q is larger than any volume can be (at most %s)",
				paramUpperSizeHint, s, quantity(names.MaxSize))
		}
		p.UpperSizeHint = q.String()
	}
	return p, nil
}

// volumeContext is what the node was told about a volume recorded before
// volumes had sizes (see createdVolume.Sized).
func (p classParams) volumeContext() map[string]string {
	vc := map[string]string{names.ContextLayerSet: p.LayerSet}
	if p.UpperSizeHint != "" {
		vc[contextUpperSizeHint] = p.UpperSizeHint
	}
	return vc
}

// volumeIDForName derives a volume's id from the name the CO gave it. The id is
// a function of the name alone, so a retried CreateVolume gets the same id
// even from a controller that lost its records. A readable name (a PV name
// such as pvc-<uid>) is the id itself, so an operator can find the volume
// on its node; any other name is hashed. The price of determinism: a name
// reused after its volume was deleted gets the old id back, and a node
// that has not swept the old upper yet would compose the new volume on it.
// Kubernetes never reuses PV names.
func volumeIDForName(name string) string { return volumeid.Name(name) }

// isControllerVolumeID reports whether id could have come from volumeIDForName. Other
// ids name no volume of this controller.
func isControllerVolumeID(id string) bool { return volumeid.IsName(id) }

// checkCreateCapabilities validates the capabilities of a new volume and reports
// whether any of them writes. A writable volume keeps its writes on one
// node's disk, so it can be neither shared by writers on several nodes nor
// a block device.
func checkCreateCapabilities(caps []*csi.VolumeCapability) (writable bool, err error) {
	if len(caps) == 0 {
		return false, status.Error(codes.InvalidArgument, "volume_capabilities is missing")
	}
	for i, c := range caps {
		if err := rpc.RequireMountCapability(c); err != nil {
			return false, status.Errorf(codes.InvalidArgument, "volume_capabilities[%d]: %s", i, status.Convert(err).Message())
		}
		switch mode := c.GetAccessMode().GetMode(); mode {
		case csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER, csi.VolumeCapability_AccessMode_MULTI_NODE_SINGLE_WRITER:
			return false, status.Errorf(codes.InvalidArgument,
				"volume_capabilities[%d]: access mode %v is not supported: writes go to an upper directory on one node's disk, "+
					"which other nodes cannot see; use a single-node mode (ReadWriteOnce, ReadWriteOncePod) or a read-only one (ReadOnlyMany)", i, mode)
		}
		if !rpc.ReadOnlyMode(c) {
			writable = true
		}
	}
	return writable, nil
}

// pinnedNode picks the node a writable volume's upper lives on from the CO's
// accessibility requirements: the first preferred node that is also
// requisite, else the first requisite node. With WaitForFirstConsumer
// binding, Kubernetes puts the node the scheduler chose first in
// preferred. No requirements at all (a CO without topology support, a
// single node) leaves the volume unpinned: "" and no error.
func pinnedNode(req *csi.TopologyRequirement) (string, error) {
	pref, reqs := req.GetPreferred(), req.GetRequisite()
	if len(pref) == 0 && len(reqs) == 0 {
		return "", nil
	}
	for _, t := range append(slices.Clip(pref), reqs...) {
		if node := t.GetSegments()[names.TopologyKey]; node != "" && (len(reqs) == 0 || requisiteHas(node, reqs)) {
			return node, nil
		}
	}
	return "", status.Errorf(codes.InvalidArgument,
		"accessibility_requirements name no node by %s (got preferred %v, requisite %v): a writable volume lives on one node",
		names.TopologyKey, describeSegments(pref), describeSegments(reqs))
}

// reachable reports whether a volume on node satisfies the requisite
// topologies: one of them names that node.
func requisiteHas(node string, requisite []*csi.Topology) bool {
	for _, t := range requisite {
		if t.GetSegments()[names.TopologyKey] == node {
			return true
		}
	}
	return false
}

func describeSegments(ts []*csi.Topology) []map[string]string {
	out := make([]map[string]string, len(ts))
	for i, t := range ts {
		out[i] = maps.Clone(t.GetSegments())
	}
	return out
}

// pinnedTopology is the accessible topology of a volume pinned to node; nil
// for a volume every node can compose.
func pinnedTopology(node string) []*csi.Topology {
	if node == "" {
		return nil
	}
	return []*csi.Topology{{Segments: map[string]string{names.TopologyKey: node}}}
}

// describeCapabilities renders capabilities for a message, e.g.
// "[mount SINGLE_NODE_WRITER]".
func describeCapabilities(caps []*csi.VolumeCapability) string {
	parts := make([]string, len(caps))
	for i, c := range caps {
		kind := "mount"
		if c.GetBlock() != nil {
			kind = "block"
		}
		parts[i] = fmt.Sprintf("%s %v", kind, c.GetAccessMode().GetMode())
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
