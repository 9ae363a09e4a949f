package node

import (
	"github.com/layerset/layerset-csi/pkg/compose"
	"github.com/layerset/layerset-csi/pkg/csi/names"
)

// podInfo reads what kubelet tells about the pod from a volume context.
func podInfo(volumeContext map[string]string) compose.PodInfo {
	return compose.PodInfo{
		PodName:        volumeContext[names.ContextPodName],
		PodNamespace:   volumeContext[names.ContextPodNamespace],
		PodUID:         volumeContext[names.ContextPodUID],
		ServiceAccount: volumeContext[names.ContextServiceAccount],
	}
}

// isEphemeral reports whether kubelet asks for an inline ephemeral volume.
func isEphemeral(volumeContext map[string]string) bool {
	return volumeContext[names.ContextEphemeral] == "true"
}
